import { hostname } from 'node:os';
import { z } from 'zod';
import { durationSchema } from '../common/duration.ts';
import { trustDomainSchema } from '../common/pki/spiffe.ts';

const listenSchema = (port: number) =>
  z
    .object({ host: z.string().default('0.0.0.0'), port: z.number().int().min(0).max(65535).default(port) })
    .strict()
    .prefault({});

const limitPolicySchema = (defaults: { burst: number; perSecond: number; maxInFlight: number }) =>
  z
    .object({
      burst: z.number().int().min(1).max(100_000).default(defaults.burst),
      perSecond: z.number().positive().max(100_000).default(defaults.perSecond),
      maxInFlight: z.number().int().min(1).max(10_000).default(defaults.maxInFlight),
    })
    .strict()
    .prefault({});

export const hubConfigSchema = z
  .object({
    trustDomain: trustDomainSchema.default('isthmus.local'),
    /** Namespace on the hub cluster for tokens, leases and hub info (the root CA is in trustNamespace). */
    namespace: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
      .default('isthmus-system'),
    /**
     * Namespace of the Secret with the root CA keys (isthmus-trust), apart from the token Secrets in
     * `namespace`: grant token operators Secrets in `namespace` only; nobody but the hub needs this one.
     */
    trustNamespace: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
      .default('isthmus-trust'),
    /** Path to the hub cluster's kubeconfig; empty means in-cluster or $KUBECONFIG. */
    kubeconfig: z.string().default(''),
    /** Name of this replica in leader election; defaults to host name and pid. */
    replicaId: z.string().min(1).default(`${hostname()}-${process.pid}`),
    grpc: listenSchema(9443),
    /** Addresses agents use to reach the hub replicas ("host:port"); defaults to the gRPC listener. */
    advertiseEndpoints: z.array(z.string().regex(/^[^\s:]+:\d+$/, 'must be host:port')).default([]),
    status: listenSchema(9090),
    /** Accept joining clusters without `isthmus cluster accept`. */
    autoAccept: z.boolean().default(false),
    heartbeat: z
      .object({
        interval: durationSchema.default(10_000),
        /** Available turns Unknown after this many intervals without a heartbeat. */
        missedBeforeUnknown: z.number().int().min(1).max(100).default(3),
        /**
         * Staleness bound: once Available has been Unknown this long (while the hub is up), the
         * member's endpoints are marked not ready in every importing cluster; never deleted.
         */
        staleAfter: durationSchema.default(60_000),
      })
      .strict()
      .prefault({}),
    certificates: z
      .object({
        agentTtl: durationSchema.default(24 * 3_600_000),
        intermediateTtl: durationSchema.default(30 * 24 * 3_600_000),
        rootTtl: durationSchema.default(10 * 365 * 24 * 3_600_000),
        /** A user-supplied root CA (PEM certificate and PKCS#8 key, RSA or ECDSA) instead of a generated one. */
        rootCertFile: z.string().optional(),
        rootKeyFile: z.string().optional(),
      })
      .strict()
      .prefault({})
      .refine(
        (c) => (c.rootCertFile === undefined) === (c.rootKeyFile === undefined),
        'rootCertFile and rootKeyFile go together',
      ),
    // With rootCertFile/rootKeyFile, the root's key is read from the files by every replica and never written to a Secret.
    nats: z
      .object({
        /** NATS URLs handed to agents and used by the hub to publish (tls://host:port). */
        urls: z.array(z.string().regex(/^(nats|tls):\/\/[^\s]+$/, 'must be nats:// or tls:// URL')).min(1),
        caFile: z.string().min(1),
        certFile: z.string().min(1),
        keyFile: z.string().min(1),
        /**
         * Copies of every bucket the hub creates (hub/nats-buckets.ts): 1 on a single nats-server,
         * 3 (or 5) on a JetStream cluster, so losing a node loses nothing. `urls` should then name
         * every node: the hub and the agents reconnect to a surviving one.
         */
        replicas: z
          .union([z.literal(1), z.literal(3), z.literal(5)], {
            error: 'must be 1, 3 or 5 (a JetStream cluster keeps an odd number of copies)',
          })
          .default(1),
        /** The hub's NATS nkey seed (HUB account): the hub alone may write; agents read from the AGENTS account. */
        nkeySeedFile: z.string().optional(),
        /**
         * Where the hub keeps NATS's TLS material (hub/nats-tls.ts): a kubernetes.io/tls Secret with
         * the trust bundle as ca.crt and NATS's certificate from the signing root, which NATS mounts
         * and reloads. Without it NATS's certificate and trusted CAs are the operator's, and a root
         * rotation cuts agents off NATS once the old root is retired.
         */
        serverTlsSecret: z
          .object({
            namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/),
            name: z
              .string()
              .regex(/^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/)
              .default('isthmus-nats-tls'),
            /** Host names and addresses NATS is dialled at (for clients that check names). */
            dnsNames: z.array(z.string().min(1)).default([]),
            ipAddresses: z.array(z.ipv4().or(z.ipv6())).default([]),
            lifetime: durationSchema.default(30 * 24 * 3_600_000),
          })
          .strict()
          .optional(),
        /**
         * NATS auth callout (hub/nats-access.ts): each member its own NATS user, decided by the hub
         * per connect, and disconnected on removal. The seed of the account nkey nats-server's
         * `auth_callout.issuer` names, and of a system account user (to find and disconnect removed
         * clusters' connections).
         */
        authCallout: z
          .object({ issuerSeedFile: z.string().min(1), systemNkeySeedFile: z.string().min(1) })
          .strict()
          .optional(),
      })
      .strict(),
    /** Bounds on what any caller can make the hub do (issue 8, hole 3 and 8). */
    limits: z
      .object({
        /** Largest Join request (two CSRs and the cluster facts are a few KiB). */
        joinMaxBytes: z
          .number()
          .int()
          .min(4096)
          .max(1024 * 1024)
          .default(64 * 1024),
        /** Largest Renew, Heartbeat or Leave request. */
        smallCallMaxBytes: z
          .number()
          .int()
          .min(4096)
          .max(1024 * 1024)
          .default(64 * 1024),
        /** Largest ReportExports request, also the gRPC server's receive limit. */
        reportMaxBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .max(64 * 1024 * 1024)
          .default(16 * 1024 * 1024),
        /** Join calls per remote address. */
        join: limitPolicySchema({ burst: 50, perSecond: 5, maxInFlight: 16 }),
        /** Calls per member cluster (heartbeats, reports, renewals). */
        agent: limitPolicySchema({ burst: 100, perSecond: 20, maxInFlight: 8 }),
        /** Services one cluster may export; a report over it is refused as a whole. */
        exportsPerCluster: z.number().int().min(1).max(50_000).default(5_000),
        /** Largest catalog entry (JSON), kept below NATS's max_payload (1 MiB by default). */
        catalogEntryMaxBytes: z
          .number()
          .int()
          .min(4096)
          .max(8 * 1024 * 1024)
          .default(512 * 1024),
        /** How long an unexported service's tombstone stays in the catalog (agents away for longer fall back on their grace period). */
        catalogTombstoneRetention: durationSchema.default(24 * 3_600_000),
      })
      .strict()
      .prefault({}),
    rotation: z
      .object({
        /**
         * How long a root rotation stage waits for every member (to hold the new bundle, or to be
         * issued certificates under the new root) before stepping on without the silent ones, with
         * a warning naming them. Healthy members follow within a few heartbeats.
         */
        stageTimeout: durationSchema.default(3_600_000),
      })
      .strict()
      .prefault({}),
    leaderElection: z
      .object({
        // Takeover after a leader dies: lease expiry plus up to one retry period, ~9.5 s.
        leaseDuration: durationSchema.default(8_000),
        renewDeadline: durationSchema.default(6_000),
        retryPeriod: durationSchema.default(1_500),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type HubConfig = z.output<typeof hubConfigSchema>;
