import { isIP } from 'node:net';
import { z } from 'zod';
import {
  dns1123LabelSchema,
  gatewayAddressSchema,
  labelValueSchema,
  qualifiedNameSchema,
} from '../common/api/index.ts';
import { durationSchema } from '../common/duration.ts';
import { DEFAULT_GATEWAY_NAME } from '../common/gateway-contract.ts';

export const AGENT_VERSION = '0.1.0';

export const agentConfigSchema = z
  .object({
    /** This cluster's id in the federation (a DNS-1123 label, unique across members). */
    clusterId: dns1123LabelSchema,
    region: labelValueSchema.optional(),
    zone: labelValueSchema.optional(),
    network: dns1123LabelSchema.optional(),
    /** Where other clusters reach this cluster's east-west gateway. */
    gatewayAddresses: z.array(gatewayAddressSchema).max(16).default([]),
    labels: z.record(qualifiedNameSchema, labelValueSchema).default({}),
    /** Name of the clusterset, written to the About API. */
    clustersetName: dns1123LabelSchema.default('isthmus'),
    /** Path to this member cluster's kubeconfig; empty means in-cluster or $KUBECONFIG. */
    kubeconfig: z.string().default(''),
    namespace: dns1123LabelSchema.default('isthmus-system'),
    /** The east-west gateway the agent issues a certificate for (its SPIFFE ID ends in /gateway/<name>). */
    gatewayName: dns1123LabelSchema.default(DEFAULT_GATEWAY_NAME),
    status: z
      .object({ host: z.string().default('0.0.0.0'), port: z.number().int().min(0).max(65535).default(9091) })
      .strict()
      .prefault({}),
    /**
     * The clusterset.local DNS responder, which the cluster's CoreDNS forwards that zone to (one
     * address for UDP and TCP). In a cluster: host 0.0.0.0, behind a Service CoreDNS forwards to.
     */
    dns: z
      .object({
        enabled: z.boolean().default(true),
        host: z
          .string()
          .refine((host) => isIP(host) !== 0, 'must be an IPv4 or IPv6 address')
          .default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(10053),
      })
      .strict()
      .prefault({}),
    /** Heartbeat interval until the hub says otherwise. */
    heartbeatInterval: durationSchema.default(10_000),
    /** Write an Istio-compatible `cacerts` Secret (the cluster intermediate as Istio's CA). */
    istioCacerts: z
      .object({ enabled: z.boolean().default(false), namespace: dns1123LabelSchema.default('istio-system') })
      .strict()
      .prefault({}),
    /** How often to look for a join request (`isthmus join`) while not a member. */
    joinPollInterval: durationSchema.default(1_000),
    /**
     * How long an import is kept after its catalog key vanished without the hub's tombstone (a
     * mistaken delete, a recreated bucket): the hub normally writes the key back within seconds.
     */
    catalogVanishedGrace: durationSchema.default(24 * 3_600_000),
  })
  .strict();

export type AgentConfig = z.output<typeof agentConfigSchema>;
