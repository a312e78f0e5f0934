// The FailoverPolicies the agent mirrors into this cluster (labelled as the agent's; a policy
// someone created by hand in a member cluster is not the hub's and is ignored), as the router
// needs them: per service, the picker's policy, the outlier settings and failback. A service
// without a policy, or with one that does not parse, gets the defaults of DESIGN §6.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import {
  FAILOVER_POLICY_KIND,
  FAILOVER_POLICY_PLURAL,
  ISTHMUS_GROUP,
  ISTHMUS_VERSION,
  failoverPolicySpecSchema,
  parseDurationMs,
  type FailoverPolicySpec,
} from '../common/api/isthmus.ts';
import { ANNOTATION_HUB_GENERATION } from '../common/failover-policy.ts';
import { Informer, customResource } from '../common/kube/index.ts';
import type { Logger } from '../common/logger.ts';
import type { OutlierSettings } from './health.ts';
import { DEFAULT_PICKER_POLICY, type PickerPolicy } from './picker.ts';

export interface ServicePolicy {
  /** The policy object's namespace/name, or '' for the defaults. */
  readonly source: string;
  readonly generation: number;
  readonly picker: PickerPolicy;
  /** Undefined: the gateway's own outlier settings. */
  readonly outlier: (OutlierSettings & { readonly maxEjectionPercent: number }) | undefined;
  /** How long a recovered level must stay healthy before it takes its traffic back; Infinity when failback is off. */
  readonly failbackDelayMs: number;
}

/** Failback delay without a policy: short, so a recovered cluster is back within seconds. */
export const DEFAULT_FAILBACK_DELAY_MS = 2_000;

export const DEFAULT_SERVICE_POLICY: ServicePolicy = {
  source: '',
  generation: 0,
  picker: DEFAULT_PICKER_POLICY,
  outlier: undefined,
  failbackDelayMs: DEFAULT_FAILBACK_DELAY_MS,
};

export function servicePolicyOf(source: string, generation: number, spec: FailoverPolicySpec): ServicePolicy {
  return {
    source,
    generation,
    picker: {
      localityPriority: spec.localityPriority ?? DEFAULT_PICKER_POLICY.localityPriority,
      minHealthyPercent: spec.minHealthyPercent,
      weights: new Map((spec.weights ?? []).map((w) => [w.cluster, w.weight])),
      regionMapping: new Map((spec.regionMapping ?? []).map((m) => [m.from, m.to])),
    },
    outlier: {
      consecutiveFailures: spec.outlierDetection.consecutiveFailures,
      baseEjectionTime: parseDurationMs(spec.outlierDetection.baseEjectionTime),
      maxEjectionTime: 10 * parseDurationMs(spec.outlierDetection.baseEjectionTime),
      maxEjectionPercent: spec.outlierDetection.maxEjectionPercent,
    },
    failbackDelayMs: spec.failback.enabled ? parseDurationMs(spec.failback.delay) : Number.POSITIVE_INFINITY,
  };
}

type PolicyObject = KubernetesObject & { spec?: unknown };

export class PolicyTable {
  readonly #informer: Informer<PolicyObject>;
  readonly #log: Logger;
  #byService = new Map<string, ServicePolicy>();
  readonly #listeners = new Set<() => void>();

  constructor(options: { kc: KubeConfig; log: Logger }) {
    this.#log = options.log;
    this.#informer = new Informer<PolicyObject>({
      kubeConfig: options.kc,
      resource: customResource({
        group: ISTHMUS_GROUP,
        version: ISTHMUS_VERSION,
        kind: FAILOVER_POLICY_KIND,
        plural: FAILOVER_POLICY_PLURAL,
        namespaced: true,
      }),
      labelSelector: 'app.kubernetes.io/managed-by=isthmus-agent',
      logger: options.log,
    });
    this.#informer.addEventHandler(() => this.#rebuild());
  }

  start(): void {
    this.#informer.start();
  }

  synced(): Promise<void> {
    return this.#informer.synced();
  }

  stop(): Promise<void> {
    return this.#informer.stop();
  }

  onChange(listener: () => void): void {
    this.#listeners.add(listener);
  }

  policyFor(namespace: string, service: string): ServicePolicy {
    return this.#byService.get(`${namespace}/${service}`) ?? DEFAULT_SERVICE_POLICY;
  }

  #rebuild(): void {
    const next = new Map<string, ServicePolicy>();
    // Oldest first, so of two policies for one service the older one wins (as on the hub).
    const objects = [...this.#informer.list()].sort((a, b) =>
      String(a.metadata?.creationTimestamp ?? '').localeCompare(String(b.metadata?.creationTimestamp ?? '')),
    );
    for (const object of objects) {
      const source = `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
      const parsed = failoverPolicySpecSchema.safeParse(object.spec);
      if (!parsed.success) {
        this.#log.warn(
          { policy: source, problem: parsed.error.message },
          'failover policy does not parse; its service keeps the defaults',
        );
        continue;
      }
      const key = `${object.metadata?.namespace ?? ''}/${parsed.data.service}`;
      const hubGeneration = Number(
        object.metadata?.annotations?.[ANNOTATION_HUB_GENERATION] ?? object.metadata?.generation ?? 0,
      );
      if (!next.has(key)) next.set(key, servicePolicyOf(source, hubGeneration, parsed.data));
    }
    this.#byService = next;
    for (const listener of this.#listeners) listener();
  }
}
