// Pure parts of the QEMU tier (the kernel tier shares its apt and cpio code): deb822 and apt
// source parsing, the initramfs writer (test/vm/cpio.test.ts checks it with cpio(1)), module
// ordering, the launcher's argument building, PPM parsing and the guest pattern definition.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseDeb822,
  parseDeb822Sources,
  parseOneLineSources,
} from '../../examples/qemu/debian-fetch.js';
import { buildCpio } from '../../examples/qemu/cpio.js';
import { orderModules, stripModuleSignature } from '../../examples/qemu/guest-image.js';
import { fastBootKernelArgs, qemuArgs, type QemuTier } from '../../examples/qemu/qemu.js';
import { parsePpm } from '../../examples/qemu/qmp.js';
import {
  barColors,
  comparePattern,
  decodeCounter,
  expectedPixel,
} from '../../examples/guest/pattern.js';

test('deb822 sources: stanzas, comments, continuation lines, disabled and deb-src skipped', () => {
  const text = [
    'Types: deb',
    '# a comment',
    'URIs: http://mirror.example/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    ' contrib',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
    '',
    'Types: deb-src',
    'URIs: http://mirror.example/debian',
    'Suites: bookworm',
    'Components: main',
    '',
    'Types: deb',
    'Enabled: no',
    'URIs: http://other.example/debian',
    'Suites: bookworm',
    'Components: main',
  ].join('\n');
  assert.deepEqual(parseDeb822Sources(text), [
    {
      uris: ['http://mirror.example/debian'],
      suites: ['bookworm', 'bookworm-updates'],
      components: ['main', 'contrib'],
      signedBy: '/usr/share/keyrings/debian-archive-keyring.gpg',
    },
  ]);
});

test('one-line sources with options', () => {
  const text =
    'deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main # x\n#deb x y z';
  assert.deepEqual(parseOneLineSources(text), [
    {
      uris: ['http://m.example/debian'],
      suites: ['bookworm'],
      components: ['main'],
      signedBy: '/k.gpg',
    },
  ]);
});

test('cpio newc: headers, padding, device node, trailer', () => {
  const archive = buildCpio([
    { kind: 'dir', path: 'dev' },
    { kind: 'char', path: '/dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'init', data: Buffer.from('abcde'), mode: 0o755 },
  ]);
  const text = archive.toString('latin1');
  assert.equal(archive.length % 4, 0);
  // Entry 2: /dev/console, mode 020600, rdev 5:1, leading slash stripped.
  const console = text.indexOf('dev/console\0');
  const header = text.slice(console - 110, console);
  assert.equal(header.slice(0, 6), '070701');
  const field = (i: number) => parseInt(header.slice(6 + i * 8, 14 + i * 8), 16);
  assert.equal(field(1), 0o020600);
  assert.deepEqual([field(9), field(10)], [5, 1]);
  assert.equal(field(11), 'dev/console'.length + 1);
  // Data starts 4-aligned after the name.
  const init = text.indexOf('init\0');
  const dataStart = Math.ceil((init + 5) / 4) * 4;
  assert.equal(text.slice(dataStart, dataStart + 5), 'abcde');
  assert.ok(text.includes('TRAILER!!!\0'));
  // Identical input, identical bytes.
  assert.deepEqual(
    buildCpio([{ kind: 'dir', path: 'dev' }]),
    buildCpio([{ kind: 'dir', path: 'dev' }]),
  );
});

test('buildCpio rejects paths that escape the archive root', () => {
  assert.throws(() => buildCpio([{ kind: 'dir', path: '../etc' }]), /bad cpio path/);
  assert.throws(() => buildCpio([{ kind: 'dir', path: '/' }]), /bad cpio path/);
});

test('parseDeb822 reads paragraphs with comments and continuation lines', () => {
  const paragraphs = parseDeb822(
    [
      'Types: deb',
      '# a comment between fields',
      'URIs: http://mirror.example/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
      '',
      'Package: linux-headers-x',
      'Depends: a (>= 1), b | c,',
      ' d',
      '',
    ].join('\n'),
  );
  assert.equal(paragraphs.length, 2);
  assert.equal(paragraphs[0].get('uris'), 'http://mirror.example/debian');
  assert.equal(paragraphs[0].get('suites'), 'bookworm bookworm-updates');
  assert.equal(paragraphs[1].get('depends'), 'a (>= 1), b | c,\nd');
});

test('module order puts dependencies first and treats - and _ alike', () => {
  const deps: Record<string, string[]> = {
    'virtio-gpu': ['drm_kms_helper', 'virtio', 'drm'],
    drm_kms_helper: ['drm'],
    virtio: ['virtio_ring'],
    virtio_pci: ['virtio_ring', 'virtio'],
  };
  const order = orderModules(['virtio_pci', 'virtio-gpu', 'virtio_gpu'], (m) => deps[m] ?? []);
  assert.deepEqual(order, [
    'virtio_ring',
    'virtio',
    'virtio_pci',
    'drm',
    'drm_kms_helper',
    'virtio-gpu',
  ]);
  assert.throws(() => orderModules(['a'], (m) => (m === 'a' ? ['b'] : ['a'])), /cycle/);
});

const fakeTier: QemuTier = {
  qemuBinary: '/q/bin/qemu-system-x86_64',
  dataDirs: ['/q/share/qemu', '/q/share/seabios'],
  moduleDir: '/q/lib/qemu',
  libraryPath: '/q/lib',
  vhostUserGpuBinary: '/q/libexec/vhost-user-gpu',
  version: '1:10.0.2',
  versionString: 'QEMU emulator version 10.0.2',
};
const fakeGuest = {
  kernel: '/g/vmlinuz',
  pvhKernel: '/g/vmlinux',
  initrd: '/g/initrd',
  kernelRelease: '6.1',
  modules: [],
  programs: [],
};

test('qemu arguments: vhost-user-gpu device, memfd RAM, command through base64', () => {
  const args = qemuArgs(fakeTier, fakeGuest, {
    gpuSocket: '/run/gpu.sock',
    scanouts: 2,
    width: 1920,
    height: 1080,
    guestCommand: 'drawpattern --frames 3',
    fbcon: false,
    ivshmemSocket: '/run/ivsh.sock',
  });
  const after = (flag: string) => args.filter((_, i) => args[i - 1] === flag);
  assert.deepEqual(after('-L'), ['/q/share/qemu', '/q/share/seabios']);
  assert.ok(
    after('-object')[0]!.includes('memory-backend-memfd') &&
      after('-object')[0]!.includes('share=on'),
  );
  assert.deepEqual(after('-chardev'), [
    'socket,id=vgpu,path=/run/gpu.sock',
    'socket,id=ivsh,path=/run/ivsh.sock',
  ]);
  assert.deepEqual(after('-device'), [
    'vhost-user-gpu-pci,chardev=vgpu,id=gpu0,xres=1920,yres=1080,max_outputs=2',
    'ivshmem-doorbell,chardev=ivsh,vectors=1',
  ]);
  const append = after('-append')[0]!;
  assert.match(append, /drm_kms_helper\.fbdev_emulation=0/);
  const encoded = /guestfb\.cmd=(\S+)/.exec(append)![1]!;
  assert.equal(Buffer.from(encoded, 'base64').toString(), 'drawpattern --frames 3');
  assert.deepEqual(after('-accel'), ['tcg']);
  // The PVH kernel by default, and a quiet kernel log.
  assert.deepEqual(after('-kernel'), ['/g/vmlinux']);
  assert.match(append, /(^| )quiet( |$)/);
});

test('qemu arguments: the bzImage and the full kernel log on request', () => {
  const args = qemuArgs(fakeTier, fakeGuest, { kernelBoot: 'bzimage', kernelLog: 'full' });
  assert.equal(args[args.indexOf('-kernel') + 1], '/g/vmlinuz');
  assert.doesNotMatch(args[args.indexOf('-append') + 1]!, /(^| )quiet( |$)/);
});

test('qemu arguments: built-in GPU by default, forced scanouts, none', () => {
  const builtin = qemuArgs(fakeTier, fakeGuest, { scanouts: 3, forceScanouts: true });
  assert.ok(builtin.includes('virtio-gpu-pci,id=gpu0,xres=1280,yres=800,max_outputs=3'));
  assert.match(builtin.join(' '), /video=Virtual-2:e video=Virtual-3:e/);
  const none = qemuArgs(fakeTier, fakeGuest, { gpuDevice: 'none' });
  assert.ok(!none.includes('-device'));
  assert.throws(
    () => qemuArgs(fakeTier, fakeGuest, { guestCommand: 'x'.repeat(2000) }),
    /too long/,
  );
});

test('qemu arguments: fast boot trims the machine and the kernel command line, off by default', () => {
  const plain = qemuArgs(fakeTier, fakeGuest, {});
  assert.equal(plain[plain.indexOf('-machine') + 1], 'pc,memory-backend=mem');
  assert.ok(!plain.includes('-global'));
  assert.ok(!plain.includes('-bios'), "SeaBIOS, QEMU's default firmware");
  assert.doesNotMatch(plain[plain.indexOf('-append') + 1]!, /initcall_blacklist/);
  const fast = qemuArgs(fakeTier, fakeGuest, { fastBoot: true });
  assert.equal(fast[fast.indexOf('-machine') + 1], 'pc,memory-backend=mem,i8042=off,vmport=off');
  assert.ok(fast.includes('PIIX4_PM.acpi-root-pci-hotplug=off'));
  assert.equal(fast[fast.indexOf('-bios') + 1], 'qboot.rom');
  const append = fast[fast.indexOf('-append') + 1]!;
  for (const word of fastBootKernelArgs) assert.ok(append.split(' ').includes(word), word);
  assert.match(append, /initcall_blacklist=[a-z0-9_,]*init_kprobe_trace/);
});

test('module signatures: the appended signature is cut off, unsigned modules pass unchanged', () => {
  const body = Buffer.from('\x7fELF module body');
  const signature = Buffer.alloc(5, 0xaa);
  const info = Buffer.from([0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, signature.length]);
  const signed = Buffer.concat([
    body,
    signature,
    info,
    Buffer.from('~Module signature appended~\n'),
  ]);
  assert.deepEqual(stripModuleSignature(signed), body);
  assert.deepEqual(stripModuleSignature(body), body);
  const bogus = Buffer.concat([
    Buffer.from([0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
    Buffer.from('~Module signature appended~\n'),
  ]);
  assert.throws(() => stripModuleSignature(bogus), /longer than its module/);
});

test('PPM parsing: header with comment, size checks', () => {
  const ppm = Buffer.concat([Buffer.from('P6\n# c\n2 1\n255\n'), Buffer.from([1, 2, 3, 4, 5, 6])]);
  const image = parsePpm(ppm);
  assert.deepEqual([image.width, image.height, [...image.rgb]], [2, 1, [1, 2, 3, 4, 5, 6]]);
  assert.throws(() => parsePpm(ppm.subarray(0, ppm.length - 1)), /truncated/);
  assert.throws(() => parsePpm(Buffer.from('P3\n1 1\n255\n')), /P6/);
});

test('pattern: bar edges, output rotation, counter bits', () => {
  const spec = { width: 1000, height: 100, outputIndex: 0, frame: 0b1000000000000101 };
  // 1000/8 = 125: bar 1 starts at 125.
  assert.equal(expectedPixel(spec, 124, 0), barColors[0]);
  assert.equal(expectedPixel(spec, 125, 0), barColors[1]);
  assert.equal(expectedPixel({ ...spec, outputIndex: 3 }, 999, 0), barColors[(7 + 3) % 8]);
  // Counter: cell 0 is the top bit, cell 15 the lowest.
  assert.equal(expectedPixel(spec, 0, 99), 0xffffff);
  assert.equal(expectedPixel(spec, 16, 99), 0x000000);
  assert.equal(expectedPixel(spec, 13 * 16, 84), 0xffffff);
  assert.equal(expectedPixel(spec, 15 * 16 + 15, 84), 0xffffff);
  assert.equal(expectedPixel(spec, 256, 99), barColors[2]);
  // Odd width: 8 bars still cover every column exactly once.
  const odd = { width: 1283, height: 20, outputIndex: 0 };
  const starts = new Set<number>();
  for (let x = 1; x < odd.width; x++) {
    if (expectedPixel(odd, x, 0) !== expectedPixel(odd, x - 1, 0)) starts.add(x);
  }
  assert.deepEqual(
    [...starts],
    [1, 2, 3, 4, 5, 6, 7].map((b) => Math.floor((b * 1283) / 8)),
  );
});

test('pattern comparison and counter decoding of a synthetic frame', () => {
  const spec = { width: 320, height: 40, outputIndex: 2, frame: 513 };
  const rgb = Buffer.alloc(spec.width * spec.height * 3);
  for (let y = 0; y < spec.height; y++) {
    for (let x = 0; x < spec.width; x++) {
      const c = expectedPixel(spec, x, y);
      rgb.writeUIntBE(c, (y * spec.width + x) * 3, 3);
    }
  }
  const image = { width: spec.width, height: spec.height, rgb };
  assert.deepEqual(comparePattern(image, spec), { mismatches: 0 });
  assert.equal(decodeCounter(image), 513);
  rgb[(5 * spec.width + 7) * 3] ^= 1;
  const result = comparePattern(image, spec);
  assert.equal(result.mismatches, 1);
  assert.deepEqual([result.first!.x, result.first!.y], [7, 5]);
  assert.equal(comparePattern(image, { ...spec, width: 321 }).mismatches, spec.width * spec.height);
});
