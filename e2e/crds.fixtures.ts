// Example objects for the CRDs in crds/: the valid ones must be accepted by a real kube-apiserver and by
// the zod schemas in common/api; each invalid one must be refused by both. `expect` is a substring of
// the apiserver's rejection message (field paths as the apiserver prints them).
import type { FailoverPolicyInput, MemberClusterInput, ServiceExport, ServiceImport } from '../common/api/index.ts';

export interface FixtureObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

export interface InvalidFixture {
  name: string;
  object: unknown;
  expect: string;
}

const MC = { apiVersion: 'isthmus.dev/v1alpha1', kind: 'MemberCluster' } as const;
const FP = { apiVersion: 'isthmus.dev/v1alpha1', kind: 'FailoverPolicy' } as const;
const SE = { apiVersion: 'multicluster.x-k8s.io/v1alpha1', kind: 'ServiceExport' } as const;
const SI = { apiVersion: 'multicluster.x-k8s.io/v1alpha1', kind: 'ServiceImport' } as const;

const memberClusterMinimal = {
  ...MC,
  metadata: { name: 'east-1' },
  spec: { clusterId: 'east-1' },
} satisfies MemberClusterInput;

const memberClusterFull = {
  ...MC,
  metadata: { name: 'west-2', labels: { 'isthmus.dev/env': 'test' } },
  spec: {
    clusterId: 'west-2',
    region: 'eu-west-1',
    zone: 'eu-west-1a',
    network: 'net-west',
    gatewayAddresses: [
      { address: '192.0.2.10', port: 15443 },
      { address: '2001:db8::10', port: 15443 },
      { address: 'gw.west-2.example.com', port: 443 },
    ],
    accepted: true,
    labels: { 'topology.isthmus.dev/rack': 'r12', provider: 'bare-metal' },
  },
} satisfies MemberClusterInput;

const failoverPolicyMinimal = {
  ...FP,
  metadata: { name: 'checkout', namespace: 'default' },
  spec: { service: 'checkout' },
} satisfies FailoverPolicyInput;

const failoverPolicyFull = {
  ...FP,
  metadata: { name: 'payments', namespace: 'default' },
  spec: {
    service: 'payments',
    localityPriority: ['network', 'region', 'zone', 'topology.isthmus.dev/rack', 'cluster'],
    regionMapping: [
      { from: 'eu-west-1', to: ['eu-central-1', 'us-east-1'] },
      { from: 'us-east-1', to: ['us-west-2'] },
    ],
    weights: [
      { cluster: 'east-1', weight: 900 },
      { cluster: 'west-2', weight: 100 },
      { cluster: 'canary-3', weight: 0 },
    ],
    outlierDetection: { consecutiveFailures: 3, interval: '500ms', baseEjectionTime: '1m30s', maxEjectionPercent: 100 },
    minHealthyPercent: 50,
    failback: { enabled: false, delay: '0s' },
  },
} satisfies FailoverPolicyInput;

const serviceExport = {
  ...SE,
  metadata: { name: 'payments', namespace: 'default' },
} satisfies ServiceExport;

const serviceExportWithSpec = {
  ...SE,
  metadata: { name: 'checkout', namespace: 'default' },
  spec: { exportedLabels: { tier: 'frontend' }, exportedAnnotations: { 'example.com/owner': 'team-a' } },
} satisfies ServiceExport;

const serviceImportClusterSetIP = {
  ...SI,
  metadata: { name: 'payments', namespace: 'default' },
  spec: {
    type: 'ClusterSetIP',
    ips: ['10.96.100.1'],
    ports: [
      { name: 'http', protocol: 'TCP', port: 80, appProtocol: 'http' },
      { name: 'grpc', protocol: 'TCP', port: 9090 },
    ],
    sessionAffinity: 'ClientIP',
    sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } },
    ipFamilies: ['IPv4'],
  },
} satisfies ServiceImport;

const serviceImportHeadless = {
  ...SI,
  metadata: { name: 'db', namespace: 'default' },
  spec: { type: 'Headless', ports: [{ port: 5432 }] },
} satisfies ServiceImport;

export const validObjects: readonly FixtureObject[] = [
  memberClusterMinimal,
  memberClusterFull,
  failoverPolicyMinimal,
  failoverPolicyFull,
  serviceExport,
  serviceExportWithSpec,
  serviceImportClusterSetIP,
  serviceImportHeadless,
];

function mc(name: string, spec: Record<string, unknown>): FixtureObject {
  return { ...MC, metadata: { name }, spec };
}
function fp(name: string, spec: Record<string, unknown>): FixtureObject {
  return { ...FP, metadata: { name, namespace: 'default' }, spec: { service: 'payments', ...spec } };
}
function si(name: string, spec: Record<string, unknown>): FixtureObject {
  return { ...SI, metadata: { name, namespace: 'default' }, spec };
}

export const invalidObjects: readonly InvalidFixture[] = [
  // MemberCluster
  {
    name: 'MemberCluster without clusterId (missing required field)',
    object: mc('bad-missing-id', { region: 'eu-west-1' }),
    expect: 'spec.clusterId: Required value',
  },
  {
    name: 'MemberCluster clusterId not a DNS-1123 label (pattern)',
    object: mc('bad-id-pattern', { clusterId: 'Cluster_A' }),
    expect: 'spec.clusterId in body should match',
  },
  {
    name: 'MemberCluster clusterId longer than 63 (maxLength)',
    object: mc('bad-id-length', { clusterId: 'a'.repeat(64) }),
    expect: 'spec.clusterId',
  },
  {
    name: 'MemberCluster region with a space (pattern)',
    object: mc('bad-region', { clusterId: 'c1', region: 'eu west' }),
    expect: 'spec.region in body should match',
  },
  {
    name: 'MemberCluster gateway port above 65535 (out of range)',
    object: mc('bad-port', { clusterId: 'c1', gatewayAddresses: [{ address: '192.0.2.1', port: 70000 }] }),
    expect: 'spec.gatewayAddresses[0].port in body should be less than or equal to 65535',
  },
  {
    name: 'MemberCluster gateway address neither IP nor hostname (CEL)',
    object: mc('bad-address', { clusterId: 'c1', gatewayAddresses: [{ address: 'gw_1.example.com', port: 15443 }] }),
    expect: 'must be an IP address or a lower-case DNS-1123 hostname',
  },
  {
    name: 'MemberCluster with 17 gateway addresses (too many items)',
    object: mc('bad-many-gateways', {
      clusterId: 'c1',
      gatewayAddresses: Array.from({ length: 17 }, (_, i) => ({ address: `192.0.2.${i + 1}`, port: 15443 })),
    }),
    expect: 'spec.gatewayAddresses: Too many',
  },
  {
    name: 'MemberCluster gateway address listed twice (list map key)',
    object: mc('bad-duplicate-gateway', {
      clusterId: 'c1',
      gatewayAddresses: [
        { address: '192.0.2.1', port: 15443 },
        { address: '192.0.2.1', port: 15443 },
      ],
    }),
    expect: 'spec.gatewayAddresses[1]: Duplicate value',
  },
  {
    name: 'MemberCluster accepted is a string (wrong type)',
    object: mc('bad-accepted', { clusterId: 'c1', accepted: 'yes' }),
    expect: 'spec.accepted in body must be of type boolean',
  },
  {
    name: 'MemberCluster label key not a qualified name (CEL)',
    object: mc('bad-label-key', { clusterId: 'c1', labels: { 'bad key!': 'x' } }),
    expect: 'keys must be qualified names',
  },
  // FailoverPolicy
  {
    name: 'FailoverPolicy without service (missing required field)',
    object: { ...FP, metadata: { name: 'bad-no-service', namespace: 'default' }, spec: { minHealthyPercent: 50 } },
    expect: 'spec.service: Required value',
  },
  {
    name: 'FailoverPolicy service not a DNS-1035 label (pattern)',
    object: fp('bad-service', { service: '1payments' }),
    expect: 'spec.service in body should match',
  },
  {
    name: 'FailoverPolicy locality key not a qualified name (pattern)',
    object: fp('bad-locality', { localityPriority: ['zone', 'not a key'] }),
    expect: 'spec.localityPriority[1] in body should match',
  },
  {
    name: 'FailoverPolicy locality key listed twice (listType set)',
    object: fp('bad-locality-dup', { localityPriority: ['zone', 'region', 'zone'] }),
    expect: 'spec.localityPriority[2]: Duplicate value',
  },
  {
    name: 'FailoverPolicy with 9 locality keys (too many items)',
    object: fp('bad-locality-many', { localityPriority: Array.from({ length: 9 }, (_, i) => `example.com/k${i}`) }),
    expect: 'spec.localityPriority: Too many',
  },
  {
    name: 'FailoverPolicy region mapped to itself (CEL)',
    object: fp('bad-mapping-self', { regionMapping: [{ from: 'eu-west-1', to: ['eu-central-1', 'eu-west-1'] }] }),
    expect: 'regionMapping must not map a region to itself',
  },
  {
    name: 'FailoverPolicy region mapping with empty to (minItems)',
    object: fp('bad-mapping-empty', { regionMapping: [{ from: 'eu-west-1', to: [] }] }),
    expect: 'spec.regionMapping[0].to',
  },
  {
    name: 'FailoverPolicy weight above 1000 (out of range)',
    object: fp('bad-weight', { weights: [{ cluster: 'east-1', weight: 1001 }] }),
    expect: 'spec.weights[0].weight in body should be less than or equal to 1000',
  },
  {
    name: 'FailoverPolicy minHealthyPercent negative (out of range)',
    object: fp('bad-min-healthy', { minHealthyPercent: -1 }),
    expect: 'spec.minHealthyPercent in body should be greater than or equal to 0',
  },
  {
    name: 'FailoverPolicy outlier interval not a duration (pattern)',
    object: fp('bad-interval', { outlierDetection: { interval: '10 seconds' } }),
    expect: 'spec.outlierDetection.interval in body should match',
  },
  {
    name: 'FailoverPolicy zero ejection time (CEL)',
    object: fp('bad-ejection-zero', { outlierDetection: { baseEjectionTime: '0s' } }),
    expect: 'must be greater than zero',
  },
  {
    name: 'FailoverPolicy failback.enabled is a string (wrong type)',
    object: fp('bad-failback', { failback: { enabled: 'true' } }),
    expect: 'spec.failback.enabled in body must be of type boolean',
  },
  // ServiceExport / ServiceImport
  {
    name: 'ServiceExport exportedLabels value is a number (wrong type)',
    object: { ...SE, metadata: { name: 'bad-labels', namespace: 'default' }, spec: { exportedLabels: { tier: 1 } } },
    expect: 'spec.exportedLabels.tier in body must be of type string',
  },
  {
    name: 'ServiceImport type LoadBalancer (bad enum)',
    object: si('bad-type', { type: 'LoadBalancer', ports: [{ port: 80 }] }),
    expect: 'spec.type: Unsupported value: "LoadBalancer"',
  },
  {
    name: 'ServiceImport without ports (missing required field)',
    object: si('bad-no-ports', { type: 'ClusterSetIP' }),
    expect: 'spec.ports: Required value',
  },
  {
    name: 'ServiceImport with three IPs (too many items)',
    object: si('bad-ips', { type: 'ClusterSetIP', ips: ['10.0.0.1', '10.0.0.2', '10.0.0.3'], ports: [{ port: 80 }] }),
    expect: 'spec.ips: Too many',
  },
  {
    name: 'ServiceImport port is a string (wrong type)',
    object: si('bad-port-type', { type: 'ClusterSetIP', ports: [{ port: '80' }] }),
    expect: 'spec.ports[0].port in body must be of type integer',
  },
];
