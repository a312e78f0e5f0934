// Throwaway PKI for the test bed's own control-plane processes (apiserver serving certs, admin
// client certs, NATS TLS). Isthmus's federation PKI is separate (common/pki).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  EKU,
  certificateToPem,
  generateKeyPair,
  issueCertificate,
  privateKeyToPem,
  publicKeyToPem,
  type Issuer,
} from '../../common/pki/x509.ts';

export interface PemFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

const day = 24 * 3600_000;

export class TestCa {
  readonly caFile: string;
  readonly caPem: string;
  readonly #issuer: Issuer;
  readonly #dir: string;

  private constructor(dir: string, caFile: string, caPem: string, issuer: Issuer) {
    this.#dir = dir;
    this.caFile = caFile;
    this.caPem = caPem;
    this.#issuer = issuer;
  }

  static async create(dir: string, name: string): Promise<TestCa> {
    const keys = await generateKeyPair();
    const certificate = await issueCertificate(
      {
        subject: `CN=${name} test CA,O=isthmus-testbed`,
        publicKey: keys.publicKey,
        notAfter: new Date(Date.now() + 7 * day),
        isCa: true,
        pathLength: 0,
      },
      keys,
    );
    const caPem = certificateToPem(certificate);
    const caFile = join(dir, `${name}-ca.crt`);
    await writeFile(caFile, caPem);
    return new TestCa(dir, caFile, caPem, { certificate, keys });
  }

  /** Issues a certificate for `subject` and writes cert and key next to the CA. */
  async issue(
    fileStem: string,
    subject: string,
    options: { dns?: string[]; ip?: string[]; server?: boolean; client?: boolean },
  ): Promise<PemFiles> {
    const keys = await generateKeyPair();
    const certificate = await issueCertificate(
      {
        subject,
        publicKey: keys.publicKey,
        notAfter: new Date(Date.now() + 7 * day),
        isCa: false,
        san: { dns: options.dns ?? [], ip: options.ip ?? [] },
        extendedKeyUsages: [...(options.server ? [EKU.serverAuth] : []), ...(options.client ? [EKU.clientAuth] : [])],
      },
      this.#issuer,
    );
    return writePem(this.#dir, fileStem, {
      certPem: certificateToPem(certificate),
      keyPem: await privateKeyToPem(keys.privateKey),
    });
  }
}

export async function writePem(
  dir: string,
  fileStem: string,
  pem: { certPem: string; keyPem: string },
): Promise<PemFiles> {
  const certFile = join(dir, `${fileStem}.crt`);
  const keyFile = join(dir, `${fileStem}.key`);
  await Promise.all([writeFile(certFile, pem.certPem), writeFile(keyFile, pem.keyPem, { mode: 0o600 })]);
  return { certFile, keyFile, ...pem };
}

/** An ECDSA key pair for kube-apiserver's service-account token signing. */
export async function writeServiceAccountKeys(dir: string): Promise<{ publicFile: string; privateFile: string }> {
  const keys = await generateKeyPair();
  const publicFile = join(dir, 'sa.pub');
  const privateFile = join(dir, 'sa.key');
  await Promise.all([
    writeFile(publicFile, await publicKeyToPem(keys.publicKey)),
    writeFile(privateFile, await privateKeyToPem(keys.privateKey), { mode: 0o600 }),
  ]);
  return { publicFile, privateFile };
}
