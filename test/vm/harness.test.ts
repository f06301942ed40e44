// The kernel-tier harness itself: exit statuses, output separation, the guest's udmabuf and
// vkms, guest node tests, timeouts. The VMs boot in parallel to keep the tier short.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import {
  ensureKernelTier,
  repoRoot,
  runGuestTestFile,
  runInVm,
  type VmRunResult,
} from './harness.js';

const selfcheck = 'dist/test/vm/guest/harness-selfcheck.vmtest.js';
/** Open fds that are files, pipes or sockets (runtime-internal anon inodes come and go). */
function openFds(): string[] {
  const targets: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (!target.startsWith('anon_inode:')) targets.push(target);
    } catch {
      // The fd readdir itself used is gone by now.
    }
  }
  return targets.sort();
}

/** Starts now, awaited by a test later: mark it handled so an early failure is not fatal. */
function started<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

const probeScript = `
printf 'arg:%s\\n' "$@"
echo "cwd:$(pwd)"
echo "env:$GUESTFB_PROBE"
echo to-stderr >&2
if [ -c /dev/udmabuf ]; then echo udmabuf:char-device; fi
echo "list_limit:$(cat /sys/module/udmabuf/parameters/list_limit)"
if [ -c /dev/dri/card0 ]; then echo card0:char-device; fi
echo "card0-modalias:$(cat /sys/class/drm/card0/device/modalias)"
echo "vkms:$(cat /sys/module/vkms/initstate)"
if [ -f "/run/guestfb/host$(pwd)/package.json" ]; then echo host-view:yes; fi
exit 7
`;
const probeArgs = ['two words', `it's "quoted" $HOME \\ *`, 'new\nline'];

const tierReady = ensureKernelTier();
const baselineFds = tierReady.then(openFds);
const boot = (options: Parameters<typeof runInVm>[0]): Promise<VmRunResult> =>
  started(tierReady.then(() => runInVm(options)));

const probe = boot({
  command: ['sh', '-c', probeScript, 'probe', ...probeArgs],
  env: { GUESTFB_PROBE: 'a b=c' },
  modules: ['vkms', 'udmabuf'],
});
const badModule = boot({ command: ['true'], modules: ['guestfb_no_such_module'] });
const bulk = boot({ command: ['sh', '-c', 'seq 1 100000; seq 1 50000 >&2; exit 255'] });
const timeout = boot({ command: ['sh', '-c', 'echo started; exec sleep 3600'], timeoutMs: 20_000 });
const quiet = { diagnostic: (): void => {} };
const guestPass = started(tierReady.then(() => runGuestTestFile(quiet, selfcheck)));
const guestFail = started(
  tierReady.then(() =>
    runGuestTestFile(quiet, selfcheck, {
      env: { GUESTFB_SELFCHECK_FAIL: '1' },
      onOutput: () => {},
    }),
  ),
);

test('the kernel tier is cached after the first preparation', async () => {
  const tier = await tierReady;
  assert.match(tier.kernelRelease, /^\d+\.\d+\.\d+.*-amd64$/);
  // A fresh process finds everything through the manifest and says it did nothing.
  const cli = path.join(repoRoot, 'dist/test/vm/run.js');
  const again = spawnSync(process.execPath, [cli, '--prepare'], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /nothing downloaded or built/);
  const reported = JSON.parse(again.stdout) as { fromCache: boolean; kernelImage: string };
  assert.equal(reported.fromCache, true);
  assert.equal(reported.kernelImage, tier.kernelImage);
});

test('exit status, argv, env, cwd and separate stdout/stderr come back exactly', async () => {
  const result = await probe;
  assert.equal(result.timedOut, false);
  assert.equal(result.status, 7);
  assert.equal(result.stderr, 'to-stderr\n');
  const lines = result.stdout.split('\n');
  assert.deepEqual(lines.slice(0, 4), [
    'arg:two words',
    `arg:it's "quoted" $HOME \\ *`,
    'arg:new',
    'line',
  ]);
  assert.ok(lines.includes(`cwd:${repoRoot}`), result.stdout);
  assert.ok(lines.includes('env:a b=c'), result.stdout);
});

test('the guest has /dev/udmabuf with list_limit 1024', async () => {
  const lines = (await probe).stdout.split('\n');
  assert.ok(lines.includes('udmabuf:char-device'), 'no /dev/udmabuf character device in the guest');
  assert.ok(lines.includes('list_limit:1024'));
});

test('vkms loads and provides /dev/dri/card0', async () => {
  const lines = (await probe).stdout.split('\n');
  assert.ok(lines.includes('vkms:live'), 'vkms is not loaded');
  assert.ok(lines.includes('card0:char-device'), 'no /dev/dri/card0');
  assert.ok(lines.includes('card0-modalias:platform:vkms'), 'card0 is not the vkms device');
});

test('large outputs arrive complete and status 255 is exact', async () => {
  const result = await bulk;
  const numbers = (count: number): string =>
    Array.from({ length: count }, (_, i) => `${i + 1}\n`).join('');
  assert.equal(result.status, 255);
  assert.equal(result.stdout.length, numbers(100000).length);
  assert.equal(result.stdout === numbers(100000), true, 'stdout differs from `seq 1 100000`');
  assert.equal(result.stderr === numbers(50000), true, 'stderr differs from `seq 1 50000`');
});

test('runGuestTestFile passes when every guest test passes', async () => {
  const result = await guestPass;
  assert.equal(result.status, 0);
  assert.match(result.stdout, /^ℹ pass 2$/m);
});

test('runGuestTestFile fails the host test with the guest summary', async () => {
  await assert.rejects(guestFail, (error: Error) => {
    assert.match(error.message, /failed in the VM \(exit status 1\)/);
    assert.match(error.message, /selfcheck failure switch/);
    assert.match(error.message, /failing on purpose/);
    return true;
  });
});

test('the unmodified host root is readable at /run/guestfb/host', async () => {
  assert.ok((await probe).stdout.split('\n').includes('host-view:yes'));
});

test('a module that cannot load fails the run loudly', async () => {
  await assert.rejects(badModule, /init failed: modprobe guestfb_no_such_module failed/);
});

test('a timeout kills the VM and is reported', async () => {
  const result = await timeout;
  assert.equal(result.timedOut, true);
  assert.equal(result.status, -1);
  assert.ok(result.durationMs >= 20_000);
});

test('no file descriptors leak across runs', async () => {
  await Promise.allSettled([probe, bulk, timeout, guestPass, guestFail, badModule]);
  assert.deepEqual(openFds(), await baselineFds);
});
