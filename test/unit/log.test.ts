import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linesOf, rateLimitedLog, type LogLevel } from '../../plugin/common/log.js';

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

test('linesOf writes levelled messages as lines, with or without the level, and drops debug', () => {
  const lines: string[] = [];
  const withLevel = linesOf((line) => lines.push(line), 'vm0: ');
  withLevel('info', 'scanout 0: 1280x800');
  withLevel('debug', 'never written');
  withLevel('error', 'session ended');
  const plain = linesOf((line) => lines.push(line), 'bar: ', { showLevel: false });
  plain('warn', 'bad header');
  plain('debug', 'never written either');
  assert.deepEqual(lines, [
    'vm0: info: scanout 0: 1280x800',
    'vm0: error: session ended',
    'bar: bad header',
  ]);
});
