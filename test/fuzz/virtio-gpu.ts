// The long fuzz run: `npm run fuzz` (node dist/test/fuzz/virtio-gpu.js --cases N [--seed S]).
import { runFuzz } from './virtio-gpu-fuzzer.js';

function option(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const cases = Number(option('cases') ?? 2_000_000);
// A random seed unless one is given: each long run explores new inputs; the seed is printed
// up front and again on failure so any run can be repeated.
const seed = Number(
  option('seed') ?? process.env.GUESTFB_FUZZ_SEED ?? (Date.now() ^ (process.pid << 16)) >>> 0,
);
if (!Number.isSafeInteger(cases) || cases <= 0 || !Number.isSafeInteger(seed)) {
  console.error('usage: virtio-gpu.js [--cases N] [--seed S]');
  process.exit(2);
}
console.log(`virtio-gpu fuzz: ${cases} cases, seed ${seed}`);
const started = Date.now();
try {
  const result = runFuzz({
    seed,
    cases,
    onProgress: (done) => {
      if (done % 100_000 === 0)
        console.log(`  ${done} cases, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    },
  });
  console.log(`ok: ${JSON.stringify(result)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  console.error(`FAILED (seed ${seed}): ${(error as Error).message}`);
  console.error(`repeat with: node dist/test/fuzz/virtio-gpu.js --cases ${cases} --seed ${seed}`);
  process.exit(1);
}
