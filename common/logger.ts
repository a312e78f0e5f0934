import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** Component name, e.g. "hub", "spoke-agent", "testbed". */
  readonly component: string;
  readonly level?: LevelWithSilent;
}

/** JSON logs on stderr (stdout stays free for command output such as the CLI's tables). */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? (process.env.ISTHMUS_LOG_LEVEL as LevelWithSilent | undefined) ?? 'info',
      base: { component: options.component },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: 2, sync: false }),
  );
}
