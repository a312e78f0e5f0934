import { describe, expect, it } from 'vitest';
import { durationSchema, parseDuration } from './duration.ts';

describe('parseDuration', () => {
  it('reads single and compound units', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('1.5s')).toBe(1_500);
  });
  it('refuses what is not a duration', () => {
    for (const bad of ['', '10', 'h', '5 m', '-5s', '1y']) expect(parseDuration(bad)).toBeUndefined();
    expect(durationSchema.safeParse('soon').error?.issues[0]?.message).toMatch(/not a duration/);
  });
});
