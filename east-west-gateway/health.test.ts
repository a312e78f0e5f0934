// Outlier detection and circuit breaking on a fake clock: nothing here waits for real time.
import { describe, expect, it } from 'vitest';
import { TargetHealthTable, type OutlierSettings } from './health.ts';

const SETTINGS: OutlierSettings = { consecutiveFailures: 3, baseEjectionTime: 1_000, maxEjectionTime: 5_000 };

function table(options: { settings?: OutlierSettings; maxConnections?: number } = {}) {
  const clock = { now: 1_000_000 };
  const ejections: { target: string; forMs: number }[] = [];
  const health = new TargetHealthTable({
    settings: options.settings ?? SETTINGS,
    maxConnections: options.maxConnections ?? 2,
    now: () => clock.now,
    onEject: (target, forMs) => ejections.push({ target, forMs }),
  });
  return { health, clock, ejections };
}

/** Fails `target` until it is ejected; returns how many failures that took. */
function failUntilEjected(health: TargetHealthTable, target: string): number {
  for (let failures = 1; failures <= 100; failures++) if (health.recordFailure(target)) return failures;
  throw new Error(`${target} never ejected`);
}

describe('TargetHealthTable outlier detection', () => {
  it('does not eject after N-1 consecutive failures, ejects at N', () => {
    const { health, ejections } = table();
    expect(health.recordFailure('a')).toBe(false);
    expect(health.recordFailure('a')).toBe(false);
    expect(health.isEjected('a')).toBe(false);
    expect(health.recordFailure('a')).toBe(true);
    expect(health.isEjected('a')).toBe(true);
    expect(ejections).toEqual([{ target: 'a', forMs: 1_000 }]);
    expect(health.isEjected('b')).toBe(false);
  });

  it('ejects for the base time, then lets the target back', () => {
    const { health, clock } = table();
    failUntilEjected(health, 'a');
    clock.now += 999;
    expect(health.isEjected('a')).toBe(true);
    clock.now += 1;
    expect(health.isEjected('a')).toBe(false);
  });

  it('doubles the ejection time with each ejection, up to the maximum', () => {
    const { health, clock, ejections } = table();
    for (let i = 0; i < 5; i++) {
      expect(failUntilEjected(health, 'a')).toBe(3);
      const [last] = ejections.slice(-1);
      clock.now += last?.forMs ?? 0;
    }
    expect(ejections.map((e) => e.forMs)).toEqual([1_000, 2_000, 4_000, 5_000, 5_000]);
  });

  it('counts only consecutive failures: a success resets the count', () => {
    const { health } = table();
    health.recordFailure('a');
    health.recordFailure('a');
    health.recordSuccess('a');
    expect(health.recordFailure('a')).toBe(false);
    expect(health.recordFailure('a')).toBe(false);
    expect(health.isEjected('a')).toBe(false);
    expect(health.recordFailure('a')).toBe(true);
  });

  it('starts again from the base time after a success once the ejection ran out', () => {
    const { health, clock, ejections } = table();
    failUntilEjected(health, 'a');
    clock.now += 1_000;
    failUntilEjected(health, 'a');
    clock.now += 2_000;
    health.recordSuccess('a');
    failUntilEjected(health, 'a');
    expect(ejections.map((e) => e.forMs)).toEqual([1_000, 2_000, 1_000]);
  });

  it('keeps the ejection history on a success while still ejected', () => {
    const { health, clock, ejections } = table();
    failUntilEjected(health, 'a');
    // A last-resort connect succeeded during the ejection: the target stays ejected, and its
    // next ejection is still the longer one.
    health.recordSuccess('a');
    expect(health.isEjected('a')).toBe(true);
    clock.now += 1_000;
    failUntilEjected(health, 'a');
    expect(ejections.map((e) => e.forMs)).toEqual([1_000, 2_000]);
  });

  it('does not extend an ejection with failures during it', () => {
    const { health, clock, ejections } = table();
    failUntilEjected(health, 'a');
    for (let i = 0; i < 5; i++) expect(health.recordFailure('a')).toBe(false);
    expect(ejections).toHaveLength(1);
    clock.now += 1_000;
    expect(health.isEjected('a')).toBe(false);
  });

  it('keeps targets apart', () => {
    const { health } = table();
    failUntilEjected(health, 'a');
    expect(health.isEjected('a')).toBe(true);
    expect(health.isEjected('b')).toBe(false);
    expect(health.recordFailure('b')).toBe(false);
  });
});

describe('TargetHealthTable circuit breaker', () => {
  it('caps open connections per target and frees capacity on close', () => {
    const { health } = table({ maxConnections: 2 });
    expect(health.hasCapacity('a')).toBe(true);
    health.opened('a');
    expect(health.hasCapacity('a')).toBe(true);
    health.opened('a');
    expect(health.hasCapacity('a')).toBe(false);
    expect(health.hasCapacity('b')).toBe(true);
    health.closed('a');
    expect(health.hasCapacity('a')).toBe(true);
  });

  it('ignores a close without an open', () => {
    const { health } = table({ maxConnections: 1 });
    health.closed('a');
    health.closed('a');
    health.opened('a');
    expect(health.hasCapacity('a')).toBe(false);
    health.closed('a');
    expect(health.hasCapacity('a')).toBe(true);
  });
});

describe('TargetHealthTable.retain', () => {
  it('forgets targets no longer wanted, with their failures and ejections', () => {
    const { health, ejections } = table();
    failUntilEjected(health, 'gone');
    health.recordFailure('kept');
    health.recordFailure('kept');
    health.retain(new Set(['kept']));
    expect(health.isEjected('gone')).toBe(false);
    // Forgotten: it takes N fresh failures again, and the first ejection is the base time.
    expect(failUntilEjected(health, 'gone')).toBe(3);
    expect(ejections.map((e) => e.forMs)).toEqual([1_000, 1_000]);
    // Kept: its two failures still count.
    expect(health.recordFailure('kept')).toBe(true);
  });

  it('keeps a target that still holds a connection', () => {
    const { health } = table({ maxConnections: 1 });
    health.opened('busy');
    failUntilEjected(health, 'busy');
    health.retain(new Set());
    expect(health.isEjected('busy')).toBe(true);
    expect(health.hasCapacity('busy')).toBe(false);
    health.closed('busy');
    health.retain(new Set());
    expect(health.isEjected('busy')).toBe(false);
    expect(health.hasCapacity('busy')).toBe(true);
  });
});
