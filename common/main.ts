// The shared life cycle of every component process: validated configuration (a bad one exits 2
// with one line naming the field), pino logging, graceful shutdown on SIGTERM/SIGINT.
import type { z } from 'zod';
import { describeError, isIsthmusError } from './errors.ts';
import { loadConfig } from './config.ts';
import { createLogger, type Logger } from './logger.ts';

export interface Running {
  /** Stops accepting work, finishes or hands over what is in flight, releases resources. */
  stop(): Promise<void>;
}

export interface ComponentSpec<S extends z.ZodType> {
  readonly name: string;
  readonly configSchema: S;
  readonly start: (config: z.output<S>, log: Logger) => Promise<Running>;
  /** Upper bound for a graceful stop before the process exits anyway. */
  readonly stopTimeoutMs?: number;
}

export async function runComponent<S extends z.ZodType>(
  spec: ComponentSpec<S>,
  argv = process.argv.slice(2),
): Promise<void> {
  let config: z.output<S>;
  try {
    config = loadConfig(spec.configSchema, argv);
  } catch (err) {
    process.stderr.write(`isthmus-${spec.name}: ${describeError(err)}\n`);
    process.exit(2);
  }
  const log = createLogger({ component: spec.name });
  let running: Running;
  try {
    running = await spec.start(config, log);
  } catch (err) {
    log.fatal({ err, code: isIsthmusError(err) ? err.code : undefined }, 'start-up failed');
    log.flush();
    process.exitCode = 1;
    return;
  }
  log.info('started');
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    const timer = setTimeout(() => {
      log.error('graceful stop timed out; exiting');
      process.exit(1);
    }, spec.stopTimeoutMs ?? 15_000);
    timer.unref();
    running.stop().then(
      () => {
        log.info('stopped');
        log.flush();
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
