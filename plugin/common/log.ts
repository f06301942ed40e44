/**
 * Logging, one signature for every part of the plugin: `Logger` takes a level and a message.
 * Only the edges that face a user (the plugin's options, the CLI, a compositor's plugin context)
 * deal in plain lines (`LineLog`); `linesOf` turns one into a Logger.
 *
 * Per-guest log rate limiting. A guest controls how often guestfb has something to say about it
 * (every RESOURCE_CREATE_2D, scanout change or BAR layout change logs a line, and a bad command
 * repeated every frame logs a warning each time), so each guest's lines pass through a token
 * bucket: a burst of `burst` lines, then `perSecond` lines a second. What is dropped is counted
 * and said on the next line that passes. Errors use their own bucket, so a flood of info lines
 * cannot hide the one line that says why a session ended.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;
/** A plain line sink (stderr, a test's array, a compositor's log). */
export type LineLog = (line: string) => void;

/**
 * A Logger that writes lines to `write`: `${prefix}${level}: ${message}`, or with
 * `showLevel: false` `${prefix}${message}`. Debug lines are dropped.
 */
export function linesOf(
  write: LineLog,
  prefix = '',
  { showLevel = true }: { showLevel?: boolean } = {},
): Logger {
  return (level, message) => {
    if (level === 'debug') return;
    write(showLevel ? `${prefix}${level}: ${message}` : `${prefix}${message}`);
  };
}

export interface LogLimits {
  /** Lines that may pass at once (default 100). */
  burst: number;
  /** Lines per second after the burst (default 10). */
  perSecond: number;
}

export const DEFAULT_LOG_LIMITS: LogLimits = { burst: 100, perSecond: 10 };

/** Checks caller-given log limits (finite, not negative) and fills in defaults. */
export function resolveLogLimits(limits: Partial<LogLimits> = {}): LogLimits {
  const resolved = { ...DEFAULT_LOG_LIMITS, ...limits };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`log limit ${name} must be a number >= 0 (got ${String(value)})`);
    }
  }
  return resolved;
}

class Bucket {
  private tokens: number;
  private last: number;
  suppressed = 0;

  constructor(
    private readonly limits: LogLimits,
    now: number,
  ) {
    this.tokens = limits.burst;
    this.last = now;
  }

  take(now: number): boolean {
    const refill = ((now - this.last) / 1000) * this.limits.perSecond;
    this.tokens = Math.min(this.limits.burst, this.tokens + refill);
    this.last = now;
    if (this.tokens < 1) {
      this.suppressed++;
      return false;
    }
    this.tokens -= 1;
    return true;
  }
}

/**
 * Wraps `log` with the limiter for the given levels (debug lines are never limited: they are off
 * unless asked for). `now` (milliseconds) is for tests.
 */
export function rateLimitedLog(
  log: Logger,
  limits: Partial<LogLimits> = {},
  levels: readonly LogLevel[] = ['info', 'warn', 'error'],
  now: () => number = () => performance.now(),
): Logger {
  const resolved = resolveLogLimits(limits);
  const lines = new Bucket(resolved, now());
  const errors = new Bucket(resolved, now());
  return (level, message) => {
    if (level === 'debug' || !levels.includes(level)) return log(level, message);
    const bucket = level === 'error' ? errors : lines;
    if (!bucket.take(now())) return;
    if (bucket.suppressed > 0) {
      message += ` (${bucket.suppressed} earlier lines of this guest suppressed)`;
      bucket.suppressed = 0;
    }
    log(level, message);
  };
}
