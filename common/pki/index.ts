// The one public entry point of Isthmus PKI: import from 'common/pki/index.ts', never from the
// files behind it.
export {
  clusterIdOf,
  clusterIdSchema,
  dnsLabelSchema,
  dnsSubdomainSchema,
  formatSpiffeId,
  parseClusterId,
  parseSpiffeId,
  parseTrustDomain,
  safeParseSpiffeId,
  trustDomainSchema,
  type SpiffeId,
  type SpiffeIdParse,
} from './spiffe.ts';
export {
  bundleToPem,
  bundleToSpiffeDocument,
  bundleToSpiffeJson,
  createTrustBundle,
  parseBundlePem,
  parseSpiffeBundle,
  rootFingerprint,
  rootPin,
  spiffeBundleSchema,
  withRoot,
  withoutRoot,
  type RootInput,
  type SpiffeBundleDocument,
  type TrustBundle,
} from './bundle.ts';
export { DEFAULT_LEAF_LIFETIME_MS, type IssueSvidOptions, type X509Svid } from './svid.ts';
export {
  DEFAULT_AGENT_CERTIFICATE_LIFETIME_MS,
  DEFAULT_HUB_SVID_LIFETIME_MS,
  DEFAULT_INTERMEDIATE_LIFETIME_MS,
  DEFAULT_NATS_SVID_LIFETIME_MS,
  DEFAULT_ROOT_LIFETIME_MS,
  AGENT_CERTIFICATE_SUBJECT,
  RootAuthority,
  intermediateSubject,
  type IssuedCertificate,
  type SignOptions,
} from './root-authority.ts';
export { ClusterAuthority, createIntermediateRequest } from './cluster-authority.ts';
export {
  LEGACY_MEMBERSHIP_EPOCH,
  membershipEpochSchema,
  membershipOf,
  newMembershipEpoch,
  type Membership,
} from './membership.ts';
export {
  PeerRefusedError,
  RefusalReason,
  peerVerificationFailures,
  verifyPeer,
  type CertificateInput,
  type PeerVerdict,
  type PeerVerificationContext,
  type VerifiedPeer,
} from './verify.ts';
export { MtlsCredentials } from './credentials.ts';
export {
  connectMtls,
  peerChainOf,
  createMtlsServer,
  mtlsClientOptions,
  serverIdentityCheck,
  spiffeServerIdentityCheck,
  verifyTlsPeer,
  type MtlsConnectOptions,
  type MtlsEndpointOptions,
  type MtlsServerOptions,
} from './tls.ts';
export {
  advanceRotation,
  beginRotation,
  clusterTrustReportSchema,
  needsReissue,
  rotationStateSchema,
  rotationStatus,
  signingRoot,
  type ClusterRotationStatus,
  type ClusterTrustObservation,
  type ClusterTrustReport,
  type ForcedStep,
  type RotationAction,
  type RotationObservation,
  type RotationPolicy,
  type RotationStage,
  type RotationState,
  type RotationStep,
} from './rotation.ts';
export {
  RENEWAL_WINDOW,
  renewalTime,
  startRenewal,
  type CertificateKind,
  type RenewalHandle,
  type RenewalOptions,
  type Validity,
} from './renewal.ts';
export { istioCacertsData, type IstioCacertsData } from './istio.ts';
export { createCertificateRequest, generateKeyPair, privateKeyToPem, type KeyAlgorithm, type KeyPair } from './x509.ts';
