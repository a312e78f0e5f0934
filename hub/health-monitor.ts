// Leader-only: turns a member's Available condition Unknown once it has missed the configured
// number of heartbeats (the heartbeat handler turns it back to True). Level-based: every tick
// compares each member's last heartbeat with now, so a new leader picks up where the old left.
import type { Logger } from '../common/logger.ts';
import { runPeriodically } from '../common/periodic.ts';
import { findCondition } from '../common/api/conditions.ts';
import type { MemberClusterStore } from './members.ts';
import { isCurrentMember, type MemberCache } from './membership.ts';

export interface HealthMonitorOptions {
  readonly intervalMs: number;
  readonly missedBeforeUnknown: number;
}

export function runHealthMonitor(
  cache: MemberCache,
  store: MemberClusterStore,
  options: HealthMonitorOptions,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  const windowMs = options.intervalMs * options.missedBeforeUnknown;
  const tickMs = Math.max(100, Math.min(1_000, options.intervalMs / 2));
  const tick = async (): Promise<void> => {
    const now = Date.now();
    for (const member of cache.list()) {
      if (!isCurrentMember(member)) continue;
      const last = member.status?.lastHeartbeatTime ? Date.parse(member.status.lastHeartbeatTime) : 0;
      const silentMs = now - last;
      if (silentMs <= windowMs || findCondition(member.status?.conditions, 'Available')?.status === 'Unknown') continue;
      const missed = Math.floor(silentMs / options.intervalMs);
      log.warn({ clusterId: member.spec.clusterId, silentMs }, 'member missed heartbeats');
      await store.patchStatus(member, {}, [
        {
          type: 'Available',
          status: 'Unknown',
          reason: 'HeartbeatMissed',
          message: `no heartbeat for ${Math.round(silentMs / 1000)} s (${missed} missed, limit ${options.missedBeforeUnknown})`,
        },
      ]);
    }
  };
  return runPeriodically(tick, tickMs, signal, (err) => log.error({ err }, 'health check failed; retrying next tick'));
}
