// NATS follows the federation's trust (issue 8, hole 9): the leader keeps one Secret that the NATS
// deployment mounts, holding `ca.crt` — every root of the current trust bundle, the CAs NATS
// verifies agent certificates against — and `tls.crt`/`tls.key`, NATS's serving identity
// (spiffe://<td>/nats) issued by the root that signs now. The Secret is rewritten whenever the
// bundle or the signing root changes, and before the certificate's half-life; NATS reloads it
// (a config reloader beside nats-server sends SIGHUP on change, as the NATS Helm chart's does).
// Root rotation counts NATS as moved once the certificate written here was issued under the new
// root, so agents trust NATS, and NATS trusts agents, at every stage.
import { X509Certificate } from 'node:crypto';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { isNotFound, putSecret } from '../common/kube/index.ts';
import type { Logger } from '../common/logger.ts';
import { bundleToPem, type RootAuthority, type TrustBundle } from '../common/pki/index.ts';

const BUNDLE_SEQUENCE_ANNOTATION = 'isthmus.dev/trust-bundle-sequence';
const SIGNING_ROOT_ANNOTATION = 'isthmus.dev/signing-root';

export interface NatsTlsOptions {
  readonly kc: KubeConfig;
  readonly namespace: string;
  readonly name: string;
  /** Names NATS clients dial (other than Isthmus, which verifies the SPIFFE ID). */
  readonly hostNames: { readonly dns: readonly string[]; readonly ip: readonly string[] };
  readonly lifetimeMs: number;
  readonly log: Logger;
}

/** What the Secret holds: for which bundle, issued by which root, to be renewed when. */
interface Published {
  readonly sequence: number;
  readonly root: string;
  readonly renewAt: number;
}

export class NatsTlsPublisher {
  readonly #options: NatsTlsOptions;
  /** What the Secret held when last read or written. */
  #published: Published | undefined;

  constructor(options: NatsTlsOptions) {
    this.#options = options;
  }

  /** The root that issued the NATS certificate last published (undefined before the first sync). */
  get issuedRoot(): string | undefined {
    return this.#published?.root;
  }

  /** Brings the Secret in line with `bundle` and `signer` (leader only; idempotent). */
  async sync(bundle: TrustBundle, signer: RootAuthority, now = Date.now()): Promise<void> {
    // Read every time: another replica may have led (and written) in between.
    const current = (this.#published = await this.#read());
    if (current && current.sequence === bundle.sequence && current.root === signer.fingerprint && now < current.renewAt)
      return;
    const { namespace, name, hostNames, lifetimeMs, log } = this.#options;
    const svid = await signer.issueNatsSvid({ hostNames, lifetimeMs, now: new Date(now) });
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    await putSecret(this.#options.kc, {
      metadata: {
        name,
        namespace,
        annotations: {
          [BUNDLE_SEQUENCE_ANNOTATION]: String(bundle.sequence),
          [SIGNING_ROOT_ANNOTATION]: signer.fingerprint,
        },
      },
      type: 'kubernetes.io/tls',
      data: {
        'ca.crt': b64(bundleToPem(bundle)),
        'tls.crt': b64(svid.certificateChainPem),
        'tls.key': b64(svid.privateKeyPem),
      },
    });
    this.#published = {
      sequence: bundle.sequence,
      root: signer.fingerprint,
      renewAt: halfLife(svid.notBefore.getTime(), svid.notAfter.getTime()),
    };
    log.info(
      { secret: `${namespace}/${name}`, bundleSequence: bundle.sequence, root: signer.fingerprint },
      'NATS trusted CAs and certificate published',
    );
  }

  async #read(): Promise<Published | undefined> {
    let secret: V1Secret;
    try {
      secret = await this.#options.kc
        .makeApiClient(CoreV1Api)
        .readNamespacedSecret({ name: this.#options.name, namespace: this.#options.namespace });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const annotations = secret.metadata?.annotations ?? {};
    const certificate = secret.data?.['tls.crt'];
    const sequence = Number(annotations[BUNDLE_SEQUENCE_ANNOTATION]);
    const root = annotations[SIGNING_ROOT_ANNOTATION];
    if (!certificate || !root || !Number.isInteger(sequence)) return undefined;
    try {
      const cert = new X509Certificate(Buffer.from(certificate, 'base64'));
      return { sequence, root, renewAt: halfLife(Date.parse(cert.validFrom), Date.parse(cert.validTo)) };
    } catch {
      // Unreadable: rewrite it.
      return undefined;
    }
  }
}

function halfLife(notBefore: number, notAfter: number): number {
  return notBefore + (notAfter - notBefore) / 2;
}
