// What the cluster's east-west gateway needs from the agent, written into the agent's namespace
// (DESIGN §1: the gateway reads only its own cluster): its leaf certificate, issued here by the
// cluster intermediate and renewed at half-life or whenever the intermediate changes, and the
// trust bundle. Writes are level-based: the same content is never written twice.
import type { KubeConfig } from '@kubernetes/client-node';
import { retryWithBackoff } from '../common/backoff.ts';
import { describeError } from '../common/errors.ts';
import { TRUST_BUNDLE_CONFIGMAP, gatewayTlsSecretName } from '../common/gateway-contract.ts';
import { putConfigMap, putSecret } from '../common/kube/index.ts';
import type { Logger } from '../common/logger.ts';
import { ClusterAuthority, startRenewal, type RenewalHandle, type X509Svid } from '../common/pki/index.ts';
import type { MemberExtension } from './agent.ts';
import { whenAborted } from '../common/lifecycle.ts';
import type { AgentCredentials } from './credentials.ts';

export const GATEWAY_COMPONENT_LABEL = {
  'app.kubernetes.io/managed-by': 'isthmus-agent',
  'app.kubernetes.io/component': 'east-west-gateway',
} as const;

const WRITE_BACKOFF = { initialMs: 500, maxMs: 30_000, jitter: 0.3 } as const;

export interface GatewayProvisionerOptions {
  readonly gatewayName: string;
  readonly namespace: string;
  readonly log: Logger;
}

export function gatewayProvisioner(options: GatewayProvisionerOptions): MemberExtension {
  const log = options.log.child({ part: 'gateway-provisioner' });
  let kc: KubeConfig | undefined;
  let current: AgentCredentials | undefined;
  let renewal: RenewalHandle | undefined;
  let writtenBundle = '';
  /** Serialises writes: renewal and a credentials change may race otherwise. */
  let chain: Promise<void> = Promise.resolve();

  async function issueLeaf(credentials: AgentCredentials): Promise<X509Svid> {
    const authority = await ClusterAuthority.create({
      trustDomain: credentials.trustDomain,
      clusterId: credentials.clusterId,
      privateKey: credentials.intermediateKey,
      intermediatePem: credentials.intermediateCertificate,
    });
    return authority.issueLeaf({
      kind: 'gateway',
      trustDomain: credentials.trustDomain,
      clusterId: credentials.clusterId,
      name: options.gatewayName,
    });
  }

  async function writeLeaf(credentials: AgentCredentials): Promise<X509Svid> {
    const svid = await issueLeaf(credentials);
    await putSecret(kc as KubeConfig, {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: {
        name: gatewayTlsSecretName(options.gatewayName),
        namespace: options.namespace,
        labels: { ...GATEWAY_COMPONENT_LABEL },
      },
      stringData: { 'tls.crt': svid.certificateChainPem, 'tls.key': svid.privateKeyPem, 'spiffe-id': svid.spiffeId },
    });
    log.info({ spiffeId: svid.spiffeId, notAfter: svid.notAfter.toISOString() }, 'gateway certificate issued');
    return svid;
  }

  async function writeBundle(credentials: AgentCredentials): Promise<void> {
    const content = `${credentials.trustBundleSequence}\n${credentials.trustBundlePem}`;
    if (content === writtenBundle) return;
    await putConfigMap(kc as KubeConfig, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace: options.namespace, labels: { ...GATEWAY_COMPONENT_LABEL } },
      data: {
        'bundle.pem': credentials.trustBundlePem,
        'bundle.spiffe.json': credentials.trustBundleJson,
        sequence: String(credentials.trustBundleSequence),
        'trust-domain': credentials.trustDomain,
      },
    });
    writtenBundle = content;
  }

  function scheduleRenewal(svid: X509Svid): void {
    renewal?.stop();
    renewal = startRenewal({
      kind: 'leaf',
      validity: { notBefore: svid.notBefore, notAfter: svid.notAfter },
      renew: async () => {
        const renewed = await serialised(() => writeLeaf(current as AgentCredentials));
        return { notBefore: renewed.notBefore, notAfter: renewed.notAfter };
      },
      onError: (err, retryInMs) =>
        log.warn({ err: describeError(err), retryInMs }, 'gateway certificate renewal failed'),
    });
  }

  function serialised<T>(work: () => Promise<T>): Promise<T> {
    const result = chain.then(work);
    chain = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** The bundle first: a gateway that trusts the new root before presenting a leaf under it drops nobody. */
  async function converge(credentials: AgentCredentials, reissue: boolean): Promise<void> {
    await writeBundle(credentials);
    if (reissue) scheduleRenewal(await writeLeaf(credentials));
  }

  return {
    async run(context) {
      kc = context.kc;
      current = context.credentials;
      await retryWithBackoff(() => serialised(() => converge(current as AgentCredentials, true)), {
        backoff: WRITE_BACKOFF,
        signal: context.signal,
        onError: (err, retryInMs) =>
          log.warn({ err: describeError(err), retryInMs }, 'cannot write the gateway credentials yet'),
      });
      await whenAborted(context.signal);
      renewal?.stop();
      await chain;
    },
    exportCount: () => 0,
    credentialsChanged(credentials) {
      const previous = current;
      current = credentials;
      if (!kc) return;
      const intermediateChanged = previous?.intermediateCertificate !== credentials.intermediateCertificate;
      serialised(() => converge(credentials, intermediateChanged)).catch((err: unknown) =>
        log.error({ err: describeError(err) }, 'cannot update the gateway credentials'),
      );
    },
  };
}
