import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rateLimitedLog, type LogLevel } from '../../plugin/sources/log-limit.js';

test('a guest log passes a burst, then a rate; what was dropped is counted on the next line', () => {
  const lines: [LogLevel, string][] = [];
  let now = 0;
  const log = rateLimitedLog(
    (level, message) => lines.push([level, message]),
    { burst: 3, perSecond: 2 },
    ['info', 'warn', 'error'],
    () => now,
  );
  for (let i = 0; i < 10; i++) log('info', `line ${i}`);
  assert.deepEqual(
    lines.map(([, m]) => m),
    ['line 0', 'line 1', 'line 2'],
  );
  log('error', 'the session ended'); // errors have their own bucket
  log('debug', 'never limited');
  assert.equal(lines.length, 5);
  now = 500; // one token back
  log('warn', 'later');
  assert.deepEqual(lines.at(-1), ['warn', 'later (7 earlier lines of this guest suppressed)']);
  log('warn', 'dropped');
  assert.equal(lines.length, 6);
  const onlyInfo = rateLimitedLog((level, message) => lines.push([level, message]), { burst: 0 }, [
    'info',
  ]);
  onlyInfo('info', 'dropped');
  onlyInfo('warn', 'passes');
  assert.deepEqual(lines.at(-1), ['warn', 'passes']);
});
