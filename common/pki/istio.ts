// Istio "plugged-in CA" Secret (`cacerts` in istio-system), so an in-cluster mesh signs its
// workloads under the cluster's intermediate and trusts the federated roots (DESIGN §3, optional).
import { X509Certificate } from 'node:crypto';
import { IsthmusError } from '../errors.ts';
import { bundleToPem, type TrustBundle } from './bundle.ts';

export interface IstioCacertsData {
  readonly 'ca-cert.pem': string;
  readonly 'ca-key.pem': string;
  /** Every root of the bundle, so rotation reaches the mesh too. */
  readonly 'root-cert.pem': string;
  /** The intermediate, then the root that signed it. */
  readonly 'cert-chain.pem': string;
}

export function istioCacertsData(
  intermediatePem: string,
  intermediateKeyPem: string,
  bundle: TrustBundle,
): IstioCacertsData {
  const intermediate = new X509Certificate(intermediatePem);
  const issuer = bundle.roots.find((root) => intermediate.checkIssued(root) && intermediate.verify(root.publicKey));
  if (issuer === undefined) {
    throw new IsthmusError(
      'ISTHMUS_PKI_INVALID',
      `intermediate ${intermediate.subject} was not signed by a root of bundle ${bundle.sequence}`,
    );
  }
  const caCert = intermediate.toString().trimEnd() + '\n';
  return {
    'ca-cert.pem': caCert,
    'ca-key.pem': intermediateKeyPem,
    'root-cert.pem': bundleToPem(bundle),
    'cert-chain.pem': caCert + issuer.toString().trimEnd() + '\n',
  };
}
