// When to renew a certificate, and a scheduler that does it. Leaves renew at half-life (DESIGN
// §3); intermediates and agent certificates, which need the hub, renew with a third of their
// life left, so a hub outage of that length never lets them expire. Both jitter the moment so a
// fleet issued together does not renew together.
import { backoffDelay } from '../backoff.ts';

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export type CertificateKind = 'leaf' | 'authority';

/** Renewal happens at a uniformly random point of this window, as fractions of the lifetime. */
export const RENEWAL_WINDOW = {
  leaf: { from: 0.5, to: 0.6 },
  authority: { from: 2 / 3, to: 0.75 },
} as const satisfies Record<CertificateKind, { from: number; to: number }>;

/** `random` returns [0, 1) like Math.random (tests pin it). */
export function renewalTime(validity: Validity, kind: CertificateKind, random: () => number = Math.random): Date {
  const start = validity.notBefore.getTime();
  const lifetime = validity.notAfter.getTime() - start;
  const window = RENEWAL_WINDOW[kind];
  return new Date(start + lifetime * (window.from + (window.to - window.from) * random()));
}

export interface RenewalOptions {
  readonly kind: CertificateKind;
  /** Validity of the certificate in use now. */
  readonly validity: Validity;
  /** Obtains and installs a new certificate, returning its validity. */
  readonly renew: () => Promise<Validity>;
  /** Delay after the first failure, doubled per failure up to maxMs. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly onError?: (err: unknown, retryInMs: number) => void;
  readonly random?: () => number;
}

export interface RenewalHandle {
  /** When the next attempt is due. */
  readonly nextAttemptAt: () => Date;
  /** Cancels the timer; a renewal in flight completes but schedules nothing. */
  readonly stop: () => void;
}

/** setTimeout holds at most 2^31-1 ms (~24.8 days); longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DEFAULT_BACKOFF = { initialMs: 1_000, maxMs: 60_000 } as const;

export function startRenewal(options: RenewalOptions): RenewalHandle {
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const random = options.random ?? Math.random;
  let stopped = false;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let dueAt = renewalTime(options.validity, options.kind, random).getTime();

  const arm = (): void => {
    if (stopped) return;
    const wait = Math.max(0, dueAt - Date.now());
    // unref: a pending renewal alone must not keep a process alive.
    timer = setTimeout(wait > MAX_TIMER_MS ? arm : attempt, Math.min(wait, MAX_TIMER_MS)).unref();
  };

  const attempt = (): void => {
    Promise.resolve()
      .then(() => options.renew())
      .then(
        (validity) => {
          failures = 0;
          dueAt = renewalTime(validity, options.kind, random).getTime();
          arm();
        },
        (err: unknown) => {
          failures += 1;
          // Half fixed, half random: retries from many clusters spread out after a hub outage.
          const retryInMs = backoffDelay(failures, { ...backoff, jitter: 0.5 }, random);
          dueAt = Date.now() + retryInMs;
          if (!stopped) options.onError?.(err, retryInMs);
          arm();
        },
      );
  };

  arm();
  return {
    nextAttemptAt: () => new Date(dueAt),
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
