// accel 'auto': KVM only after probeKvm() found it working for this host kernel and QEMU; the
// verdict is cached in the cache folder, so a cached verdict decides without booting anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { probeKvm, qemuArgs, type QemuTier } from '../../examples/qemu/qemu.js';

const guest = {
  kernel: '/g/vmlinuz',
  pvhKernel: '/g/vmlinux',
  initrd: '/g/initrd',
  kernelRelease: '6.1',
  modules: [],
  programs: [],
};

function fakeTier(name: string): QemuTier {
  return {
    qemuBinary: path.join(os.tmpdir(), `guestfb-no-such-qemu-${name}-${process.pid}`),
    dataDirs: [],
    moduleDir: '/nonexistent',
    libraryPath: '/nonexistent',
    vhostUserGpuBinary: '/nonexistent',
    version: `test-${name}`,
    versionString: 'QEMU test',
  };
}

const accelOf = (args: string[]) => [
  args[args.indexOf('-accel') + 1],
  args[args.indexOf('-cpu') + 1],
];

function kvmDeviceUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function withCache(body: (cacheHome: string) => Promise<void>): Promise<void> {
  const cacheHome = mkdtempSync(path.join(os.tmpdir(), 'guestfb-kvm-probe-'));
  const saved = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = cacheHome;
  try {
    await body(cacheHome);
  } finally {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    rmSync(cacheHome, { recursive: true, force: true });
  }
}

test('auto is TCG until a probe says KVM works', () => {
  assert.deepEqual(accelOf(qemuArgs(fakeTier('unprobed'), guest, {})), ['tcg', 'max']);
  assert.deepEqual(accelOf(qemuArgs(fakeTier('unprobed'), guest, { accel: 'kvm' })), [
    'kvm',
    'host',
  ]);
});

test('a cached working verdict makes auto KVM (tcg stays tcg); without /dev/kvm it is TCG', async () => {
  await withCache(async (cacheHome) => {
    const tier = fakeTier('cached');
    const key = `${os.release()} ${os.version()}; QEMU ${tier.version}`;
    mkdirSync(path.join(cacheHome, 'guestfb', 'qemu'), { recursive: true });
    writeFileSync(
      path.join(cacheHome, 'guestfb', 'qemu', 'kvm-probe.json'),
      JSON.stringify({
        [key]: { usable: true, reason: 'a test boot finished in 1.0 s', key, probedAt: 'earlier' },
      }),
    );
    const logs: string[] = [];
    const verdict = await probeKvm(tier, guest, (line) => logs.push(line));
    if (kvmDeviceUsable()) {
      assert.equal(verdict.usable, true);
      assert.match(
        logs.join('\n'),
        /accelerator: KVM \(a test boot finished in 1\.0 s \(probed earlier\)\)/,
      );
      assert.deepEqual(accelOf(qemuArgs(tier, guest, {})), ['kvm', 'host']);
    } else {
      assert.equal(verdict.usable, false);
      assert.match(logs.join('\n'), /accelerator: TCG, because KVM is unavailable: \/dev\/kvm/);
      assert.deepEqual(accelOf(qemuArgs(tier, guest, {})), ['tcg', 'max']);
    }
    assert.deepEqual(accelOf(qemuArgs(tier, guest, { accel: 'tcg' })), ['tcg', 'max']);
  });
});

test('a failed probe boot falls back to TCG with the reason, and is cached', async () => {
  await withCache(async (cacheHome) => {
    // A read-write stand-in for the device node gets the probe past its access check on hosts
    // without /dev/kvm, so the boot step itself is what fails here.
    const kvmStandIn = path.join(cacheHome, 'kvm');
    writeFileSync(kvmStandIn, '');
    const tier = fakeTier('failing'); // the binary does not exist: the boot cannot succeed
    const logs: string[] = [];
    const verdict = await probeKvm(tier, guest, (line) => logs.push(line), kvmStandIn);
    assert.equal(verdict.usable, false);
    assert.match(
      logs[0] ?? '',
      /^accelerator: TCG, because KVM (failed|could not be tried|did not)/,
    );
    assert.deepEqual(accelOf(qemuArgs(tier, guest, {})), ['tcg', 'max']);
    const cached = JSON.parse(
      readFileSync(path.join(cacheHome, 'guestfb', 'qemu', 'kvm-probe.json'), 'utf8'),
    ) as Record<string, { usable: boolean }>;
    assert.equal(Object.values(cached)[0]?.usable, false);
  });
});
