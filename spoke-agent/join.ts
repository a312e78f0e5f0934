// Joining the federation: keys made here (the intermediate's never leaves the cluster), the hub
// found by CA pin, the Join call answered with certificates, the result kept in a Secret. The
// hub pins a pending join to the keys of its first request, so every retry of one join must use
// the same keys (JoinKeyPairs, kept in a Secret by the agent until the join completes).
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import { HubClient, hubChannelCredentials, isHubCallError, type ClusterFacts } from '../common/hub-api/index.ts';
import { IsthmusError, isIsthmusError, type ErrorCode } from '../common/errors.ts';
import {
  createCertificateRequest,
  createIntermediateRequest,
  generateKeyPair,
  privateKeyToPem,
  type KeyPair,
} from '../common/pki/index.ts';
import type { AgentCredentials, AgentSecrets, Bootstrap } from './credentials.ts';
import { discoverHubCa } from './hub-discovery.ts';
import { hubIdentityCheck } from './hub-session.ts';

/** Refusals that another attempt with the same join request cannot fix. */
const TERMINAL: ReadonlySet<ErrorCode> = new Set([
  'ISTHMUS_TOKEN_MALFORMED',
  'ISTHMUS_TOKEN_UNKNOWN',
  'ISTHMUS_TOKEN_EXPIRED',
  'ISTHMUS_TOKEN_EXHAUSTED',
  'ISTHMUS_TOKEN_REVOKED',
  'ISTHMUS_CA_PIN_MISMATCH',
  'ISTHMUS_CLUSTER_ID_TAKEN',
  'ISTHMUS_INPUT_INVALID',
  'ISTHMUS_PEER_REFUSED',
  'ISTHMUS_JOIN_KEYS_MISMATCH',
  'ISTHMUS_PKI_CSR_INVALID',
]);

/** The two keys of one join: the same for every retry until the join completes. */
export interface JoinKeyPairs {
  readonly intermediate: KeyPair;
  readonly agent: KeyPair;
}

export async function generateJoinKeys(): Promise<JoinKeyPairs> {
  const [intermediate, agent] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  return { intermediate, agent };
}

/** A P-256 key pair from its PKCS#8 PEM (as privateKeyToPem wrote it). */
export async function keyPairFromPem(privatePem: string): Promise<KeyPair> {
  const key = createPrivateKey(privatePem);
  const ecdsa = { name: 'ECDSA', namedCurve: 'P-256' } as const;
  const [privateKey, publicKey] = await Promise.all([
    webcrypto.subtle.importKey('pkcs8', key.export({ type: 'pkcs8', format: 'der' }), ecdsa, true, ['sign']),
    webcrypto.subtle.importKey('spki', createPublicKey(key).export({ type: 'spki', format: 'der' }), ecdsa, true, [
      'verify',
    ]),
  ]);
  return { algorithm: 'P-256', privateKey, publicKey };
}

export function isTerminalJoinError(err: unknown): boolean {
  const code = isHubCallError(err) || isIsthmusError(err) ? err.code : undefined;
  return code !== undefined && TERMINAL.has(code);
}

/** The join's keys as kept in the cluster (created on the first attempt). */
export async function loadJoinKeys(secrets: AgentSecrets): Promise<JoinKeyPairs> {
  const pems = await secrets.joinKeys(async () => {
    const fresh = await generateJoinKeys();
    return {
      intermediateKey: await privateKeyToPem(fresh.intermediate.privateKey),
      agentKey: await privateKeyToPem(fresh.agent.privateKey),
    };
  });
  const [intermediate, agent] = await Promise.all([
    keyPairFromPem(pems.intermediateKey),
    keyPairFromPem(pems.agentKey),
  ]);
  return { intermediate, agent };
}

/** One join attempt against the endpoints in order; throws the most telling error. */
export async function join(bootstrap: Bootstrap, facts: ClusterFacts, keys?: JoinKeyPairs): Promise<AgentCredentials> {
  const { intermediate: intermediateKeys, agent: agentKeys } = keys ?? (await generateJoinKeys());
  const [intermediateCsr, agentCsr] = await Promise.all([
    createIntermediateRequest(intermediateKeys, facts.clusterId),
    createCertificateRequest(agentKeys, `CN=isthmus agent ${facts.clusterId}`),
  ]);
  let lastError: unknown = new IsthmusError('ISTHMUS_HUB_UNAVAILABLE', 'no hub endpoint given');
  for (const endpoint of bootstrap.hubEndpoints) {
    let client: HubClient | undefined;
    try {
      const hub = await discoverHubCa(endpoint, bootstrap.caPin);
      client = new HubClient(
        endpoint,
        hubChannelCredentials(hub.caPem, undefined, {
          checkServerIdentity: hubIdentityCheck(hub.trustDomain, hub.caPem),
        }),
      );
      // Join may wait on the hub for `isthmus cluster accept`.
      const response = await client.call('Join', { token: bootstrap.token, facts, intermediateCsr, agentCsr }, 60_000);
      return {
        clusterId: facts.clusterId,
        trustDomain: response.trustDomain,
        agentCertificate: response.credentials.agentCertificate,
        agentKey: await privateKeyToPem(agentKeys.privateKey),
        intermediateCertificate: response.credentials.intermediateCertificate,
        intermediateKey: await privateKeyToPem(intermediateKeys.privateKey),
        trustBundlePem: response.credentials.trustBundlePem,
        trustBundleJson: response.credentials.trustBundleJson,
        trustBundleSequence: response.credentials.trustBundleSequence,
        hubEndpoints: response.hubEndpoints.length > 0 ? response.hubEndpoints : bootstrap.hubEndpoints,
        natsUrls: response.natsUrls,
        heartbeatIntervalSeconds: response.heartbeatIntervalSeconds,
      };
    } catch (err) {
      lastError = err;
      if (isTerminalJoinError(err)) throw err;
    } finally {
      client?.close();
    }
  }
  throw lastError;
}
