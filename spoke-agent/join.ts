// Joining the federation: keys made here (the intermediate's never leaves the cluster), the hub
// found by CA pin, the Join call answered with certificates, the result kept in a Secret.
import { HubClient, hubChannelCredentials, isHubCallError, type ClusterFacts } from '../common/hub-api/index.ts';
import { IsthmusError, isIsthmusError, type ErrorCode } from '../common/errors.ts';
import { createCertificateRequest, createIntermediateRequest, generateKeyPair, privateKeyToPem } from '../common/pki/index.ts';
import type { AgentCredentials, Bootstrap } from './credentials.ts';
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
]);

export function isTerminalJoinError(err: unknown): boolean {
  const code = isHubCallError(err) || isIsthmusError(err) ? err.code : undefined;
  return code !== undefined && TERMINAL.has(code);
}

/** One join attempt against the endpoints in order; throws the most telling error. */
export async function join(bootstrap: Bootstrap, facts: ClusterFacts): Promise<AgentCredentials> {
  const [intermediateKeys, agentKeys] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const [intermediateCsr, agentCsr] = await Promise.all([
    createIntermediateRequest(intermediateKeys, facts.clusterId),
    createCertificateRequest(agentKeys, `CN=isthmus agent ${facts.clusterId}`),
  ]);
  let lastError: unknown = new IsthmusError('ISTHMUS_HUB_UNAVAILABLE', 'no hub endpoint given');
  for (const endpoint of bootstrap.hubEndpoints) {
    let client: HubClient | undefined;
    try {
      const hub = await discoverHubCa(endpoint, bootstrap.caPin);
      client = new HubClient(endpoint, hubChannelCredentials(hub.caPem, undefined, { checkServerIdentity: hubIdentityCheck(hub.trustDomain, hub.caPem) }));
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
