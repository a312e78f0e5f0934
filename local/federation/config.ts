// What a local federation's components are configured with, whether they run as processes
// (local/federation) or as containers (local/containers): the federation root and NATS's
// identity from it, the hub's NATS nkeys and the files the hub reads, and the hub, agent and
// gateway configuration objects (validated by each component's own schema when it starts).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nkeys } from '@nats-io/transport-node';
import { GATEWAY_INBOUND_PORT } from '../../common/gateway-contract.ts';
import { federationNatsAccounts } from '../../common/nats-authorization.ts';
import { RootAuthority } from '../../common/pki/index.ts';
import type { NatsAuthorization } from '../testbed/index.ts';

const day = 24 * 3600_000;

export interface Locality {
  readonly region: string;
  readonly zone: string;
}

/** Member i's locality: two zones of eu-west, then two of us-east. */
export function memberLocality(index: number): Locality {
  const localities: readonly Locality[] = [
    { region: 'eu-west', zone: 'eu-west-1a' },
    { region: 'eu-west', zone: 'eu-west-1b' },
    { region: 'us-east', zone: 'us-east-1a' },
    { region: 'us-east', zone: 'us-east-1b' },
  ];
  return localities[index % localities.length] as Locality;
}

/** Member i's name: cluster-a, cluster-b, ... */
export function memberName(index: number): string {
  return `cluster-${String.fromCharCode(97 + index)}`;
}

/** The files (paths) the hub reads its root and NATS credentials from. */
export interface HubSecretFiles {
  readonly rootCert: string;
  readonly rootKey: string;
  readonly natsCa: string;
  readonly natsCert: string;
  readonly natsKey: string;
  readonly natsSeed: string;
  readonly calloutIssuerSeed: string;
  readonly systemSeed: string;
}

export class FederationSecrets {
  readonly trustDomain: string;
  readonly rootPem: string;
  /** NATS's serving certificate (spiffe://<td>/nats, from the root) and its CA, for nats-server. */
  readonly natsServing: { readonly certPem: string; readonly keyPem: string; readonly caPem: string };
  readonly #rootKeyPem: string;
  readonly #hub: ReturnType<typeof nkeys.createUser>;
  readonly #calloutIssuer: ReturnType<typeof nkeys.createAccount>;
  readonly #system: ReturnType<typeof nkeys.createUser>;

  private constructor(init: {
    trustDomain: string;
    rootPem: string;
    rootKeyPem: string;
    natsServing: { certPem: string; keyPem: string; caPem: string };
  }) {
    this.trustDomain = init.trustDomain;
    this.rootPem = init.rootPem;
    this.#rootKeyPem = init.rootKeyPem;
    this.natsServing = init.natsServing;
    // The hub writes to NATS with an nkey; agents are admitted read-only one member at a time by
    // the hub (auth callout, signed with the issuer's key), and removed ones disconnected through
    // a system account user.
    this.#hub = nkeys.createUser();
    this.#calloutIssuer = nkeys.createAccount();
    this.#system = nkeys.createUser();
  }

  /**
   * A fresh federation root, plugged into the hub, so NATS can trust it from the start; NATS's
   * identity is spiffe://<td>/nats from it (what Isthmus clients check), `natsHostNames` are for
   * the test bed's own clients, which check those.
   */
  static async create(trustDomain: string, natsHostNames: { ip: string[]; dns: string[] }): Promise<FederationSecrets> {
    const authority = await RootAuthority.generate({ trustDomain, lifetimeMs: 30 * day });
    const [rootPem, rootKeyPem] = [authority.certificatePem, await authority.exportPrivateKeyPem()];
    const svid = await authority.issueNatsSvid({ lifetimeMs: 30 * day, hostNames: natsHostNames });
    return new FederationSecrets({
      trustDomain,
      rootPem,
      rootKeyPem,
      natsServing: { certPem: svid.certificateChainPem, keyPem: svid.privateKeyPem, caPem: rootPem },
    });
  }

  /** nats-server's accounts: the hub's and the test bed admin's nkeys write, agents come through the auth callout. */
  natsAuthorization(adminNkey: string): NatsAuthorization {
    return federationNatsAccounts([this.#hub.getPublicKey(), adminNkey], {
      issuer: this.#calloutIssuer.getPublicKey(),
      systemNkey: this.#system.getPublicKey(),
    });
  }

  /** Writes the hub's root and NATS credentials into `dir` (`natsClient`: its NATS client certificate). */
  writeHubFiles(dir: string, natsClient: { cert: string; key: string }): HubSecretFiles {
    const files: HubSecretFiles = {
      rootCert: join(dir, 'root.crt'),
      rootKey: join(dir, 'root.key'),
      natsCa: join(dir, 'nats-ca.crt'),
      natsCert: join(dir, 'hub-nats.crt'),
      natsKey: join(dir, 'hub-nats.key'),
      natsSeed: join(dir, 'hub-nats.nk'),
      calloutIssuerSeed: join(dir, 'hub-nats-issuer.nk'),
      systemSeed: join(dir, 'hub-nats-system.nk'),
    };
    const secret = { mode: 0o600 };
    const seed = (k: { getSeed(): Uint8Array }): string => new TextDecoder().decode(k.getSeed());
    writeFileSync(files.natsSeed, seed(this.#hub), secret);
    writeFileSync(files.calloutIssuerSeed, seed(this.#calloutIssuer), secret);
    writeFileSync(files.systemSeed, seed(this.#system), secret);
    writeFileSync(files.rootCert, this.rootPem);
    writeFileSync(files.rootKey, this.#rootKeyPem, secret);
    writeFileSync(files.natsCa, this.rootPem);
    writeFileSync(files.natsCert, natsClient.cert);
    writeFileSync(files.natsKey, natsClient.key, secret);
    return files;
  }
}

/** A hub replica's configuration; `settings` are merged over it last. */
export function hubConfig(c: {
  trustDomain: string;
  kubeconfig: string;
  replicaId: string;
  grpc: { host: string; port: number };
  advertiseEndpoints: readonly string[];
  status: { host: string; port: number };
  natsUrls: readonly string[];
  files: HubSecretFiles;
  /** Merged over the `nats` section (e.g. `replicas`, `serverTlsSecret`). */
  natsSettings?: Record<string, unknown>;
  settings?: Record<string, unknown>;
}): Record<string, unknown> {
  const { files } = c;
  return {
    trustDomain: c.trustDomain,
    kubeconfig: c.kubeconfig,
    replicaId: c.replicaId,
    grpc: c.grpc,
    advertiseEndpoints: c.advertiseEndpoints,
    status: c.status,
    autoAccept: true,
    heartbeat: { interval: '1s', missedBeforeUnknown: 3 },
    certificates: { rootCertFile: files.rootCert, rootKeyFile: files.rootKey },
    nats: {
      urls: c.natsUrls,
      replicas: 1,
      caFile: files.natsCa,
      certFile: files.natsCert,
      keyFile: files.natsKey,
      nkeySeedFile: files.natsSeed,
      authCallout: { issuerSeedFile: files.calloutIssuerSeed, systemNkeySeedFile: files.systemSeed },
      ...c.natsSettings,
    },
    ...c.settings,
  };
}

/** A member agent's configuration. */
export function agentConfig(c: {
  clusterId: string;
  locality: Locality;
  gatewayAddress: string;
  kubeconfig: string;
  status: { host: string; port: number };
  dns: { host: string; port: number };
}): Record<string, unknown> {
  return {
    clusterId: c.clusterId,
    ...c.locality,
    network: 'loopback',
    gatewayAddresses: [{ address: c.gatewayAddress, port: GATEWAY_INBOUND_PORT }],
    kubeconfig: c.kubeconfig,
    status: c.status,
    dns: c.dns,
    joinPollInterval: '200ms',
  };
}

/** A member gateway's configuration; `settings` are merged over it last. */
export function gatewayConfig(c: {
  clusterId: string;
  kubeconfig: string;
  inboundHost: string;
  outboundAddress: string;
  status: { host: string; port: number };
  settings?: Record<string, unknown>;
}): Record<string, unknown> {
  return {
    clusterId: c.clusterId,
    kubeconfig: c.kubeconfig,
    inbound: { host: c.inboundHost, port: GATEWAY_INBOUND_PORT },
    outbound: { address: c.outboundAddress },
    status: c.status,
    drainTimeout: '5s',
    ...c.settings,
  };
}
