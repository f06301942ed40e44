// The long hostile-guest fuzz run (framing, memory tables, backing storms, the BAR header under a
// concurrent writer): node dist/test/fuzz/hostile.js --cases N [--seed S]; `npm run fuzz` runs it.
import { runHostileFuzz } from './hostile-fuzzer.js';

function option(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const cases = Number(option('cases') ?? 1_000_000);
// A random seed unless one is given; printed up front and on failure so any run can be repeated.
const seed = Number(
  option('seed') ?? process.env.GUESTFB_FUZZ_SEED ?? (Date.now() ^ (process.pid << 16)) >>> 0,
);
if (!Number.isSafeInteger(cases) || cases <= 0 || !Number.isSafeInteger(seed)) {
  console.error('usage: hostile.js [--cases N] [--seed S]');
  process.exit(2);
}
console.log(`hostile-guest fuzz: ${cases} cases, seed ${seed}`);
const started = Date.now();
try {
  const result = runHostileFuzz({
    seed,
    cases,
    onProgress: (done) => {
      if (done % 100_000 === 0)
        console.log(`  ${done} cases, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    },
  });
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `ok: ${JSON.stringify(result)} in ${seconds.toFixed(1)} s (${Math.round(cases / seconds)} cases/s)`,
  );
} catch (error) {
  console.error(`FAILED (seed ${seed}): ${(error as Error).message}`);
  console.error(`repeat with: node dist/test/fuzz/hostile.js --cases ${cases} --seed ${seed}`);
  process.exit(1);
}
