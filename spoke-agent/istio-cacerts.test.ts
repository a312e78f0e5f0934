import { X509Certificate } from 'node:crypto';
import { CoreV1Api } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ensureNamespace } from '../common/kube/index.ts';
import { RootAuthority, createIntermediateRequest, generateKeyPair, privateKeyToPem } from '../common/pki/index.ts';
import { startTestbed } from '../local/testbed/index.ts';
import type { AgentCredentials } from './credentials.ts';
import { ISTIO_CACERTS_SECRET, writeIstioCacerts } from './istio-cacerts.ts';

describe('Istio cacerts Secret', () => {
  it('is written only where the mesh namespace exists, with the intermediate as CA and the chain to the root', async () => {
    await using bed = await startTestbed({ clusters: 1, nats: false, installCrds: false });
    const kc = bed.clusters[0]!.kubeConfig();
    const root = await RootAuthority.generate({ trustDomain: 'isthmus.local' });
    const keys = await generateKeyPair();
    const intermediate = await root.signIntermediate(
      'cluster-a',
      1,
      await createIntermediateRequest(keys, 'cluster-a'),
    );
    const credentials = {
      clusterId: 'cluster-a',
      trustDomain: 'isthmus.local',
      intermediateCertificate: intermediate.certificatePem,
      intermediateKey: await privateKeyToPem(keys.privateKey),
      trustBundlePem: root.certificatePem,
      trustBundleSequence: 1,
    } as AgentCredentials;

    expect(await writeIstioCacerts(kc, 'istio-system', credentials)).toBe(false);
    await ensureNamespace(kc, 'istio-system');
    expect(await writeIstioCacerts(kc, 'istio-system', credentials)).toBe(true);
    expect(await writeIstioCacerts(kc, 'istio-system', credentials)).toBe(true);

    const secret = await kc
      .makeApiClient(CoreV1Api)
      .readNamespacedSecret({ name: ISTIO_CACERTS_SECRET, namespace: 'istio-system' });
    const data = Object.fromEntries(
      Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
    );
    expect(Object.keys(data).sort()).toEqual(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    const ca = new X509Certificate(data['ca-cert.pem']!);
    expect(ca.ca).toBe(true);
    expect(ca.verify(new X509Certificate(data['root-cert.pem']!).publicKey)).toBe(true);
    expect(data['cert-chain.pem']).toBe(data['ca-cert.pem']! + root.certificatePem.trimEnd() + '\n');
    expect(data['ca-key.pem']).toContain('BEGIN PRIVATE KEY');
  });
});
