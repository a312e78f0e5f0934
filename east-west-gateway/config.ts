// The gateway's configuration, validated at start-up (a bad value exits 2 naming the field).
// Durations are Go-style strings ("500ms", "1m"), held in milliseconds after parsing.
import { z } from 'zod';
import { dns1123LabelSchema } from '../common/api/index.ts';
import { durationSchema } from '../common/duration.ts';
import { DEFAULT_GATEWAY_NAME, GATEWAY_INBOUND_PORT } from '../common/gateway-contract.ts';

const portSchema = z.number().int().min(0).max(65535);

export const gatewayConfigSchema = z
  .object({
    /** This cluster's id in the federation (as the agent's). */
    clusterId: dns1123LabelSchema,
    /** The gateway's name: its SPIFFE ID is spiffe://<td>/cluster/<id>/gateway/<name>. */
    name: dns1123LabelSchema.default(DEFAULT_GATEWAY_NAME),
    /** Path to this cluster's kubeconfig; empty means in-cluster or $KUBECONFIG. */
    kubeconfig: z.string().default(''),
    /** Where the agent writes the gateway's certificate, trust bundle and membership. */
    namespace: dns1123LabelSchema.default('isthmus-system'),
    inbound: z
      .object({ host: z.string().default('0.0.0.0'), port: portSchema.default(GATEWAY_INBOUND_PORT) })
      .strict()
      .prefault({}),
    outbound: z
      .object({
        /** The in-cluster address clients reach the outbound listeners at (bound and published). */
        address: z.union([z.ipv4(), z.ipv6()]),
        /** Listener ports are taken from this range, stable per service port. */
        portRange: z
          .object({ from: portSchema.default(20_000), to: portSchema.default(29_999) })
          .strict()
          .prefault({})
          .refine((r) => r.from > 0 && r.from <= r.to, { message: 'from must be > 0 and <= to' }),
      })
      .strict(),
    status: z
      .object({ host: z.string().default('0.0.0.0'), port: portSchema.default(9093) })
      .strict()
      .prefault({}),
    /**
     * A connect (TCP to a backend, or TLS + backend answer through a remote gateway) slower than
     * this fails over. Generous: a burst of handshakes queues; a dead gateway is caught by probes.
     */
    connectTimeout: durationSchema.default(5_000),
    /** A connection with no byte either way for this long is closed. */
    idleTimeout: durationSchema.default(3_600_000),
    /** On SIGTERM, open connections get this long to finish. */
    drainTimeout: durationSchema.default(10_000),
    /** Circuit breaker: open connections per candidate (a remote cluster or a local endpoint). */
    maxConnectionsPerCandidate: z.number().int().min(1).default(10_000),
    /** Client bytes held before the far side confirmed a backend, for replay on failover. */
    replayBufferBytes: z
      .number()
      .int()
      .min(1_024)
      .max(16 * 1024 * 1024)
      .default(64 * 1024),
    outlierDetection: z
      .object({
        consecutiveFailures: z.number().int().min(1).default(3),
        baseEjectionTime: durationSchema.default(5_000),
        maxEjectionTime: durationSchema.default(300_000),
      })
      .strict()
      .prefault({}),
    /** Active probes of remote gateways: a TLS handshake and the gateway's answer. */
    probe: z
      .object({
        /** A new probe starts every interval; they may overlap. */
        interval: durationSchema.default(250),
        timeout: durationSchema.default(500),
        /** Consecutive failed or late probes before a cluster takes no new connections. */
        unhealthyThreshold: z.number().int().min(1).default(2),
        /** Consecutive successes before a cluster marked down by probes takes traffic again. */
        healthyThreshold: z.number().int().min(1).default(2),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
