// The test guest: Debian's own 6.1 kernel (bookworm, unmodified) plus a busybox initramfs that
// loads the virtio-gpu driver stack and runs one command (examples/guest/init.sh), with the
// static programs of examples/guest compiled on the host. Everything is cached; a manifest per
// piece lets a second run skip the network entirely.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import {
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildCpio, type CpioEntry } from './cpio.js';
import {
  cacheDir,
  ensureAptIndex,
  extractDeb,
  hostAptSources,
  hostCodename,
  readManifest,
  withCacheLock,
  writeFileAtomic,
  writeManifest,
} from './debian-fetch.js';

const execFileAsync = promisify(execFile);

export interface GuestImage {
  /** bzImage for -kernel (firmware boot with in-guest decompression). */
  kernel: string;
  /**
   * The same kernel as an uncompressed ELF with its PVH entry note, for -kernel: QEMU jumps
   * straight to it, skipping the real-mode setup and the xz decompression, which cost most of
   * a TCG boot before the kernel's first line (about 20 s of 30 s to /init on a busy host,
   * minutes when QEMU itself runs under TCG).
   */
  pvhKernel: string;
  /** Uncompressed newc initramfs for -initrd. */
  initrd: string;
  /** `uname -r` of the guest kernel, e.g. 6.1.0-56-amd64. */
  kernelRelease: string;
  /** Modules /init loads, in order. */
  modules: string[];
  /** Guest programs included in /bin (names). */
  programs: string[];
}

/**
 * Modules the guest needs; their dependencies are added from modinfo. virtio_input and evdev
 * give a vhost-user-input device its /dev/input/event node (examples/guest/evdump.c reads it).
 */
const rootModules = ['virtio_pci', 'virtio-gpu', 'virtio_console', 'virtio_input', 'evdev'];
const kernelMetapackage = 'linux-image-amd64';
const busyboxPath = '/bin/busybox';

/** The repository root (the folder with guestfb's package.json), found from this file. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'guestfb') {
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('guest-image: cannot find the guestfb repository root');
    dir = parent;
  }
}

function sha256(...parts: (string | Buffer)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex').slice(0, 16);
}

interface KernelManifest {
  package: string;
  version: string;
  kernelRelease: string;
  /** Folder (relative to the guest cache) with vmlinuz and modules/<name>.ko. */
  dir: string;
  modules: string[];
}

const normalize = (name: string) => name.replace(/-/g, '_');

/** Parses modules.dep into module name (normalized) -> { file, dependency names }. */
export function parseModulesDep(text: string): Map<string, { file: string; deps: string[] }> {
  const nameOf = (file: string) => normalize(path.basename(file).replace(/\.ko(\.\w+)?$/, ''));
  const modules = new Map<string, { file: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const file = line.slice(0, colon);
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(nameOf);
    modules.set(nameOf(file), { file, deps });
  }
  return modules;
}

/** Orders `roots` and their dependencies (from `dependsOf`) so that each follows its dependencies. */
export function orderModules(roots: string[], dependsOf: (name: string) => string[]): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: string[]) => {
    const key = normalize(name);
    if (state.get(key) === 'done') return;
    if (state.get(key) === 'visiting') {
      throw new Error(`guest-image: module dependency cycle: ${[...chain, name].join(' -> ')}`);
    }
    state.set(key, 'visiting');
    for (const dep of dependsOf(name)) visit(dep, [...chain, name]);
    state.set(key, 'done');
    order.push(name);
  };
  for (const root of roots) visit(root, []);
  return order;
}

/**
 * Writes the ELF kernel a bzImage carries (its compressed payload, located through the x86
 * boot protocol's setup header: payload_offset at 0x248 and payload_length at 0x24c, counted
 * from the protected-mode code after the setup sectors) to `out`, decompressed.
 */
export async function extractVmlinux(bzImage: string, out: string): Promise<void> {
  const image = await readFile(bzImage);
  if (image.length < 0x250 || image.readUInt32LE(0x202) !== 0x53726448) {
    throw new Error(`guest-image: ${bzImage} is not a bzImage (no HdrS setup header)`);
  }
  const setupSectors = image[0x1f1] || 4;
  const start = (setupSectors + 1) * 512 + image.readUInt32LE(0x248);
  const length = image.readUInt32LE(0x24c);
  if (length === 0 || start + length > image.length) {
    throw new Error(`guest-image: ${bzImage} has no payload within the file`);
  }
  // The kernel build appends the decompressed size (le32) after the compressed stream.
  const payload = image.subarray(start, start + length - 4);
  const expectedSize = image.readUInt32LE(start + length - 4);
  const decompressor = payload.subarray(0, 6).equals(Buffer.from('fd377a585a00', 'hex'))
    ? 'xz -dc'
    : payload.subarray(0, 4).equals(Buffer.from('28b52ffd', 'hex'))
      ? 'zstd -dcq'
      : payload.subarray(0, 2).equals(Buffer.from('1f8b', 'hex'))
        ? 'gzip -dc'
        : undefined;
  if (!decompressor) {
    throw new Error(`guest-image: ${bzImage}: unknown payload compression`);
  }
  const compressed = `${out}.${process.pid}.payload`;
  const temp = `${out}.${process.pid}.tmp`;
  try {
    await writeFile(compressed, payload);
    await execFileAsync('sh', ['-c', `${decompressor} "$1" > "$2"`, 'sh', compressed, temp]).catch(
      (error: { stderr?: string; message: string }) => {
        throw new Error(`guest-image: decompressing ${bzImage}: ${error.stderr || error.message}`);
      },
    );
    const elf = await readFile(temp);
    if (elf.length !== expectedSize || elf.readUInt32BE(0) !== 0x7f454c46) {
      throw new Error(
        `guest-image: the payload of ${bzImage} is not an ELF file of the recorded size`,
      );
    }
    await rename(temp, out);
  } finally {
    await rm(compressed, { force: true });
    await rm(temp, { force: true });
  }
}

const MODULE_SIGNATURE_MARKER = Buffer.from('~Module signature appended~\n');
/** struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], be32 sig_len. */
const MODULE_SIGNATURE_INFO_SIZE = 12;

/**
 * A kernel module without the signature Debian appends to it (the module's bytes are unchanged;
 * an unsigned module is returned as it is). The test guest's kernel does not enforce signatures,
 * and checking one costs a hash over the whole module, which is slow under TCG inside TCG.
 */
export function stripModuleSignature(module: Buffer): Buffer {
  const marker = MODULE_SIGNATURE_MARKER;
  if (module.length < marker.length + MODULE_SIGNATURE_INFO_SIZE) return module;
  if (!module.subarray(module.length - marker.length).equals(marker)) return module;
  const info = module.length - marker.length - MODULE_SIGNATURE_INFO_SIZE;
  const signatureLength = module.readUInt32BE(info + 8);
  const end = info - signatureLength;
  if (end <= 0) throw new Error('guest-image: a module signature longer than its module');
  return module.subarray(0, end);
}

async function ensureKernel(
  guestDir: string,
  progress?: (msg: string) => void,
): Promise<KernelManifest> {
  const wantedKey = sha256(rootModules.join(','));
  // One manifest and tree per module set: checkouts with another set (other branches sharing
  // the cache) keep theirs instead of replacing each other's on every boot.
  const manifestFile = path.join(guestDir, `guest-kernel-${wantedKey}.json`);
  const cached = readManifest<KernelManifest & { key: string }>(
    manifestFile,
    (m) =>
      m.key === wantedKey &&
      existsSync(path.join(guestDir, m.dir, 'vmlinuz')) &&
      m.modules.every((name) => existsSync(path.join(guestDir, m.dir, 'modules', `${name}.ko`))),
  );
  if (cached) {
    const vmlinux = path.join(guestDir, cached.dir, 'vmlinux');
    if (!existsSync(vmlinux)) {
      progress?.('extracting the PVH kernel from vmlinuz');
      await extractVmlinux(path.join(guestDir, cached.dir, 'vmlinuz'), vmlinux);
    }
    return cached;
  }
  const codename = hostCodename();
  // The host's own sources for the release (bookworm, -updates, -security), not backports.
  const sources = hostAptSources().filter((s) =>
    s.suites.every((suite) => suite === codename || suite.startsWith(`${codename}-`)),
  );
  const index = await ensureAptIndex({ dir: path.join(guestDir, 'apt'), sources, progress });
  const [imagePackage] = await index.dependencies(kernelMetapackage, /^linux-image-\d/);
  if (!imagePackage)
    throw new Error(`guest-image: ${kernelMetapackage} has no linux-image dependency`);
  const resolved = await index.resolve(imagePackage);
  const [deb] = await index.download([resolved], path.join(guestDir, 'debs'), progress);
  const scratch = await mkdtemp(path.join(guestDir, '.extract-'));
  try {
    progress?.(`extracting ${path.basename(deb!)}`);
    await extractDeb(deb!, scratch);
    const release = readdirSync(path.join(scratch, 'lib/modules'))[0];
    if (!release) throw new Error(`guest-image: ${imagePackage} has no lib/modules`);
    const moduleFiles = new Map<string, string>();
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (/\.ko(\.xz|\.zst)?$/.test(entry.name)) {
          moduleFiles.set(normalize(entry.name.replace(/\.ko(\.xz|\.zst)?$/, '')), full);
        }
      }
    };
    walk(path.join(scratch, 'lib/modules', release));
    const depends = new Map<string, string[]>();
    for (const root of rootModules) {
      const pending = [root];
      while (pending.length) {
        const name = pending.pop()!;
        if (depends.has(normalize(name))) continue;
        const file = moduleFiles.get(normalize(name));
        if (!file) throw new Error(`guest-image: module ${name} is not in ${imagePackage}`);
        const { stdout } = await execFileAsync('modinfo', ['-F', 'depends', file]);
        const deps = stdout.trim().split(',').filter(Boolean);
        depends.set(normalize(name), deps);
        pending.push(...deps);
      }
    }
    const modules = orderModules(rootModules, (name) => depends.get(normalize(name)) ?? []);
    const kernelDir = `guest-kernel-${release}-${wantedKey}`;
    const target = path.join(guestDir, kernelDir);
    await rm(target, { recursive: true, force: true });
    await mkdir(path.join(target, 'modules'), { recursive: true });
    await copyFile(path.join(scratch, 'boot', `vmlinuz-${release}`), path.join(target, 'vmlinuz'));
    progress?.('extracting the PVH kernel from vmlinuz');
    await extractVmlinux(path.join(target, 'vmlinuz'), path.join(target, 'vmlinux'));
    for (const name of modules) {
      const file = moduleFiles.get(normalize(name))!;
      const out = path.join(target, 'modules', `${name}.ko`);
      if (file.endsWith('.xz'))
        await execFileAsync('sh', ['-c', 'xz -dc "$1" > "$2"', 'sh', file, out]);
      else if (file.endsWith('.zst'))
        await execFileAsync('zstd', ['-q', '-d', '-f', file, '-o', out]);
      else await copyFile(file, out);
    }
    const manifest = {
      key: wantedKey,
      package: imagePackage,
      version: resolved.version,
      kernelRelease: release,
      dir: kernelDir,
      modules,
    };
    writeManifest(manifestFile, manifest);
    // Trees of an older kernel release with this module set are no longer used.
    for (const old of readdirSync(guestDir)) {
      if (old.startsWith('guest-kernel-') && old.endsWith(`-${wantedKey}`) && old !== kernelDir) {
        await rm(path.join(guestDir, old), { recursive: true, force: true });
      }
    }
    return manifest;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Compiles every examples/guest/*.c statically; cached by a hash of the sources and flags. */
async function ensurePrograms(
  guestDir: string,
  progress?: (msg: string) => void,
): Promise<{ dir: string; names: string[] }> {
  const sourceDir = path.join(repoRoot(), 'examples', 'guest');
  const sources = (await readdir(sourceDir)).filter((f) => f.endsWith('.c')).sort();
  const { stdout: includeFlags } = await execFileAsync('pkg-config', ['--cflags', 'libdrm']);
  const flags = [
    '-static',
    '-O2',
    '-Wall',
    '-Wextra',
    '-Werror',
    ...includeFlags.trim().split(/\s+/).filter(Boolean),
  ];
  const headers = (await readdir(sourceDir)).filter((f) => f.endsWith('.h')).sort();
  const key = sha256(
    flags.join(' '),
    ...[...sources, ...headers].flatMap((f) => [f, readFileSync(path.join(sourceDir, f))]),
  );
  const dir = path.join(guestDir, `programs-${key}`);
  const names = sources.map((f) => f.replace(/\.c$/, ''));
  if (names.every((n) => existsSync(path.join(dir, n)))) return { dir, names };
  const scratch = await mkdtemp(path.join(guestDir, '.programs-'));
  try {
    for (const source of sources) {
      const name = source.replace(/\.c$/, '');
      progress?.(`compiling examples/guest/${source}`);
      try {
        await execFileAsync('gcc', [
          ...flags,
          '-o',
          path.join(scratch, name),
          path.join(sourceDir, source),
        ]);
      } catch (error) {
        const e = error as { stderr?: string; message: string };
        throw new Error(`guest-image: gcc ${source} failed:\n${e.stderr || e.message}`);
      }
    }
    await rm(dir, { recursive: true, force: true });
    await rename(scratch, dir);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return { dir, names };
}

async function checkStatic(file: string): Promise<void> {
  const { stdout, stderr } = await execFileAsync('ldd', [file]).catch(
    (e: { stdout?: string; stderr?: string }) => ({
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  );
  if (!/not a dynamic executable|statically linked/.test(stdout + stderr)) {
    throw new Error(`guest-image: ${file} is not statically linked (install busybox-static)`);
  }
}

/**
 * Makes sure the guest kernel and initramfs are in the cache and returns their paths. The first
 * run downloads the kernel package (about 70 MB); later runs use the manifest and do no I/O
 * beyond a few stats, unless the guest sources changed (then only the initramfs is rebuilt).
 */
export async function ensureGuest(progress?: (msg: string) => void): Promise<GuestImage> {
  const guestDir = cacheDir('guest');
  return withCacheLock(guestDir, async () => {
    const kernel = await ensureKernel(guestDir, progress);
    const programs = await ensurePrograms(guestDir, progress);
    if (!existsSync(busyboxPath)) {
      throw new Error(`guest-image: ${busyboxPath} is missing (install busybox-static)`);
    }
    const init = await readFile(path.join(repoRoot(), 'examples', 'guest', 'init.sh'));
    const busybox = await readFile(busyboxPath);
    const key = sha256(
      'modules without signatures',
      kernel.dir,
      kernel.modules.join(','),
      init,
      busybox,
      programs.dir,
      programs.names.join(','),
    );
    const initrd = path.join(guestDir, `initramfs-${key}.cpio`);
    if (!existsSync(initrd)) {
      await checkStatic(busyboxPath);
      progress?.(`building ${path.basename(initrd)}`);
      const entries: CpioEntry[] = [
        ...['bin', 'dev', 'etc', 'etc/guestfb', 'lib', 'lib/modules', 'proc', 'sys', 'tmp'].map(
          (p): CpioEntry => ({ kind: 'dir', path: p }),
        ),
        { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
        { kind: 'file', path: 'init', data: init, mode: 0o755 },
        { kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
        {
          kind: 'file',
          path: 'etc/guestfb/modules',
          data: Buffer.from(`${kernel.modules.join('\n')}\n`),
        },
      ];
      for (const name of kernel.modules) {
        const data = stripModuleSignature(
          await readFile(path.join(guestDir, kernel.dir, 'modules', `${name}.ko`)),
        );
        entries.push({ kind: 'file', path: `lib/modules/${name}.ko`, data });
      }
      for (const name of programs.names) {
        const file = path.join(programs.dir, name);
        await checkStatic(file);
        entries.push({
          kind: 'file',
          path: `bin/${name}`,
          data: await readFile(file),
          mode: 0o755,
        });
      }
      writeFileAtomic(initrd, buildCpio(entries));
    } else {
      // Marks the image as in use (the clean-up below goes by modification time); a read-only
      // cache cannot be marked, and needs no clean-up either.
      const now = new Date();
      await utimes(initrd, now, now).catch(() => undefined);
    }
    // Other images belong to other checkouts of the guest sources, possibly booting right now
    // from their own copy: remove only those nobody asked for in a day (each rebuilds in well
    // under a second from cached parts).
    for (const old of await readdir(guestDir)) {
      const file = path.join(guestDir, old);
      if (!/^initramfs-.*\.cpio$/.test(old) || file === initrd) continue;
      const modified = (await stat(file).catch(() => null))?.mtimeMs ?? Date.now();
      if (Date.now() - modified > 24 * 3600_000) await rm(file, { force: true });
    }
    return {
      kernel: path.join(guestDir, kernel.dir, 'vmlinuz'),
      pvhKernel: path.join(guestDir, kernel.dir, 'vmlinux'),
      initrd,
      kernelRelease: kernel.kernelRelease,
      modules: kernel.modules,
      programs: programs.names,
    };
  });
}
