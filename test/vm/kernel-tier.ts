// Fetches, builds and caches what the kernel test tier boots: Debian's backports kernel (it has
// CONFIG_UDMABUF=y), its modules, vkms built out of tree against its headers, and an initramfs.
// Everything lives under ${XDG_CACHE_HOME:-~/.cache}/guestfb/kernel; a manifest records what was
// fetched, so later runs neither download nor build anything.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCpio, type CpioEntry } from '../../examples/qemu/cpio.js';
import {
  cacheDir as guestfbCacheDir,
  ensureBackportsIndex,
  extractDeb,
  hostCodename,
  hostMirrorUri,
  readManifest,
  withCacheLock,
  writeFileAtomic,
  writeManifest,
  type ResolvedPackage,
} from '../../examples/qemu/debian-fetch.js';
import { orderModules, parseModulesDep } from '../../examples/qemu/guest-image.js';
import { runToolChecked } from './process.js';

/** Paths of a ready kernel tier. */
export interface KernelTier {
  /** e.g. 6.12.95+deb12-amd64 (`uname -r` in the guest). */
  kernelRelease: string;
  /** Debian package version, e.g. 6.12.95-1~bpo12+1. */
  packageVersion: string;
  /** The bzImage given to QEMU's -kernel. */
  kernelImage: string;
  initramfs: string;
  /** Root for `modprobe -d` / `depmod -b`: holds lib/modules/<kernelRelease>. */
  modulesRoot: string;
  /** <modulesRoot>/lib/modules/<kernelRelease>, with modules.dep covering vkms. */
  modulesDir: string;
  /** The out-of-tree vkms module (also installed as updates/vkms.ko in modulesDir). */
  vkmsModule: string;
  /** The kernel's headers (a kbuild tree usable with `make -C <headersDir> M=...`). */
  headersDir: string;
  cacheDir: string;
  /** True when this call downloaded and built nothing. */
  fromCache: boolean;
}

interface Manifest {
  format: 1;
  kernelRelease: string;
  packageVersion: string;
  packages: Record<string, string>;
  compiler: string;
  mirror: string;
  /** Paths relative to the cache folder. */
  kernelImage: string;
  modulesRoot: string;
  headersDir: string;
  vkmsModule: string;
  createdAt: string;
}

const manifestFormat = 1;
/** Modules the initramfs loads itself, before the host root is reachable (deps follow). */
const bootModules = ['9pnet_virtio', '9p', 'overlay'];

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const initScriptPath = path.join(repoRoot, 'test/vm/guest-init.sh');

export function kernelCacheDir(): string {
  return guestfbCacheDir('kernel');
}

function defaultProgress(message: string): void {
  process.stderr.write(`[guestfb kernel tier] ${message}\n`);
}

let pending: Promise<KernelTier> | undefined;

/**
 * Makes sure the kernel, modules, vkms and initramfs are in the cache, fetching and building
 * what is missing (first run: about 300 MB of downloads). Progress goes to `progress`
 * (default: stderr). Concurrent callers, in this process or others, wait for one builder.
 */
export function ensureKernelTier(
  progress: (msg: string) => void = defaultProgress,
): Promise<KernelTier> {
  pending ??= prepare(progress).catch((error: unknown) => {
    pending = undefined;
    throw error;
  });
  return pending;
}

async function prepare(progress: (msg: string) => void): Promise<KernelTier> {
  if (os.arch() !== 'x64') {
    throw new Error(
      `the kernel tier boots an amd64 kernel under QEMU and supports x64 hosts only (this is ${os.arch()})`,
    );
  }
  const cacheDir = kernelCacheDir();
  mkdirSync(cacheDir, { recursive: true });
  let manifest = readTierManifest(cacheDir);
  let built = false;
  if (!manifest) {
    manifest = await withCacheLock(
      cacheDir,
      async () => {
        const current = readTierManifest(cacheDir);
        if (current) return current;
        built = true;
        return fetchAndBuild(cacheDir, progress);
      },
      {
        // A lock held far longer than a build takes belongs to a dead process whose pid was reused.
        staleMs: 30 * 60 * 1000,
        onWait: (owner) =>
          progress(`waiting for another process (pid ${owner}) that is preparing the kernel tier`),
      },
    );
  }
  const initramfs = await ensureInitramfs(cacheDir, manifest, progress);
  built ||= initramfs.built;
  const tier: KernelTier = {
    kernelRelease: manifest.kernelRelease,
    packageVersion: manifest.packageVersion,
    kernelImage: path.join(cacheDir, manifest.kernelImage),
    initramfs: initramfs.path,
    modulesRoot: path.join(cacheDir, manifest.modulesRoot),
    modulesDir: path.join(cacheDir, manifest.modulesRoot, 'lib/modules', manifest.kernelRelease),
    vkmsModule: path.join(cacheDir, manifest.vkmsModule),
    headersDir: path.join(cacheDir, manifest.headersDir),
    cacheDir,
    fromCache: !built,
  };
  if (!built) {
    progress(
      `using cached linux ${tier.kernelRelease} (${tier.packageVersion}): nothing downloaded or built`,
    );
  }
  return tier;
}

/** The manifest, if it is current and every file it names exists; otherwise undefined. */
function readTierManifest(cacheDir: string): Manifest | undefined {
  return readManifest<Manifest>(path.join(cacheDir, 'manifest.json'), (manifest) => {
    if (manifest.format !== manifestFormat) return false;
    const needed = [
      manifest.kernelImage,
      manifest.vkmsModule,
      path.join(manifest.headersDir, '.config'),
      path.join(manifest.modulesRoot, 'lib/modules', manifest.kernelRelease, 'modules.dep'),
    ];
    return needed.every((rel) => existsSync(path.join(cacheDir, rel)));
  });
}

async function fetchAndBuild(cacheDir: string, progress: (msg: string) => void): Promise<Manifest> {
  const started = Date.now();
  const aptDir = path.join(cacheDir, 'apt');
  // Left by the earlier private-apt code; it would list the same suite twice.
  rmSync(path.join(aptDir, 'sources', 'backports.sources'), { force: true });
  const index = await ensureBackportsIndex(aptDir, progress);
  const suite = `${hostCodename()}-backports`;

  const [imagePackage] = await index.dependencies(
    'linux-image-amd64',
    /^linux-image-\d+\.\d+\.\d+.*-amd64$/,
  );
  if (!imagePackage)
    throw new Error(`linux-image-amd64 in ${suite} depends on no versioned linux-image-*-amd64`);
  const kernelRelease = imagePackage.slice('linux-image-'.length);
  const series = /^(\d+\.\d+)\./.exec(kernelRelease)?.[1];
  if (!series) throw new Error(`cannot tell the kernel series of ${kernelRelease}`);
  const packageVersion = (await index.resolve(imagePackage)).version;
  const headersPackage = `linux-headers-${kernelRelease}`;
  const headersDepends = await index.dependencies(headersPackage, /^linux-/);
  const commonPackage = headersDepends.find((name) => /^linux-headers-.*-common$/.test(name));
  const kbuildPackage = headersDepends.find((name) => name.startsWith(`linux-kbuild-${series}`));
  if (!commonPackage || !kbuildPackage) {
    throw new Error(
      `${headersPackage} names no -common headers or linux-kbuild package in its Depends`,
    );
  }
  const sourcePackage = `linux-source-${series}`;
  const packages = [imagePackage, headersPackage, commonPackage, kbuildPackage];
  const wanted: ResolvedPackage[] = await Promise.all(packages.map((name) => index.resolve(name)));
  // vkms must come from the same source version as the image it is loaded into.
  wanted.push({ ...(await index.resolve(sourcePackage)), version: packageVersion });
  for (const { name, version } of wanted) {
    if (version !== packageVersion) {
      throw new Error(
        `${name} is at ${version} in ${suite}, the kernel image at ${packageVersion}: retry later`,
      );
    }
  }
  progress(`resolved linux-image-amd64 -> ${imagePackage} ${packageVersion}`);

  const tierDir = path.join(cacheDir, kernelRelease);
  const downloads = path.join(cacheDir, 'downloads');
  rmSync(downloads, { recursive: true, force: true });
  rmSync(tierDir, { recursive: true, force: true });
  progress(`downloading ${wanted.map((p) => p.name).join(', ')} (about 280 MB)`);
  const debPaths = await index.download(wanted, downloads, progress);
  const debs = new Map(wanted.map((p, i) => [p.name, debPaths[i] ?? '']));

  const rootDir = path.join(tierDir, 'root');
  mkdirSync(rootDir, { recursive: true });
  for (const name of packages) {
    progress(`extracting ${path.basename(debs.get(name) ?? name)}`);
    await extractDeb(debs.get(name) ?? '', rootDir);
  }
  makeSymlinksRelative(rootDir);
  const headersDir = path.join(rootDir, 'usr/src', headersPackage);
  const commonDir = path.join(rootDir, 'usr/src', commonPackage);
  retargetHeadersMakefile(headersDir, commonDir);
  const compiler = checkCompiler(headersDir);

  const vkmsDir = path.join(tierDir, 'vkms');
  await extractVkmsSources(debs.get(sourcePackage) ?? '', series, tierDir, vkmsDir, progress);
  progress(`building vkms against ${headersPackage} with ${compiler}`);
  await runToolChecked(
    'building vkms out of tree',
    'make',
    [
      '-C',
      headersDir,
      `M=${vkmsDir}`,
      'CONFIG_DRM_VKMS=m',
      // BTF for modules needs pahole and matters only to BPF tools; leave it out.
      'CONFIG_DEBUG_INFO_BTF_MODULES=',
      `-j${Math.max(1, os.availableParallelism())}`,
      'modules',
    ],
    {
      onLine: (line) => progress(`make: ${line.trim()}`),
      installHint: 'install make (scripts/setup.sh)',
    },
  );
  const vkmsModule = path.join(vkmsDir, 'vkms.ko');
  if (!existsSync(vkmsModule)) throw new Error(`make succeeded but left no ${vkmsModule}`);

  const modulesDir = path.join(rootDir, 'lib/modules', kernelRelease);
  mkdirSync(path.join(modulesDir, 'updates'), { recursive: true });
  writeFileSync(path.join(modulesDir, 'updates/vkms.ko'), readFileSync(vkmsModule));
  progress('depmod for the kernel and vkms');
  await runToolChecked('depmod', 'depmod', ['-b', rootDir, kernelRelease], {
    installHint: 'install kmod (scripts/setup.sh)',
  });

  const rel = (file: string): string => path.relative(cacheDir, file);
  const manifest: Manifest = {
    format: manifestFormat,
    kernelRelease,
    packageVersion,
    packages: Object.fromEntries(wanted.map((p) => [p.name, p.version])),
    compiler,
    mirror: hostMirrorUri(),
    kernelImage: rel(path.join(rootDir, 'boot', `vmlinuz-${kernelRelease}`)),
    modulesRoot: rel(rootDir),
    headersDir: rel(headersDir),
    vkmsModule: rel(vkmsModule),
    createdAt: new Date().toISOString(),
  };
  if (!existsSync(path.join(cacheDir, manifest.kernelImage))) {
    throw new Error(`${imagePackage} has no /boot/vmlinuz-${kernelRelease}`);
  }
  rmSync(downloads, { recursive: true, force: true });
  writeManifest(path.join(cacheDir, 'manifest.json'), manifest);
  progress(
    `kernel tier ready in ${((Date.now() - started) / 1000).toFixed(1)} s: linux ${kernelRelease} in ${tierDir}`,
  );
  return manifest;
}

/** The debs hold absolute symlinks (e.g. lib/modules/<r>/build); point them inside `rootDir`. */
function makeSymlinksRelative(rootDir: string): void {
  for (const entry of readdirSync(rootDir, { withFileTypes: true, recursive: true })) {
    if (!entry.isSymbolicLink()) continue;
    const link = path.join(entry.parentPath ?? entry.path, entry.name);
    const target = readlinkSync(link);
    if (!path.isAbsolute(target)) continue;
    unlinkSync(link);
    symlinkSync(path.relative(path.dirname(link), path.join(rootDir, target)), link);
  }
}

/** Debian's arch headers Makefile includes the -common tree by absolute path; make it relative. */
function retargetHeadersMakefile(headersDir: string, commonDir: string): void {
  const makefile = path.join(headersDir, 'Makefile');
  const text = readFileSync(makefile, 'utf8');
  const relative = path.relative(headersDir, commonDir);
  const rewritten = text.replace(
    /^include\s+\/usr\/src\/[^\s/]+\/Makefile$/m,
    `include $(dir $(lastword $(MAKEFILE_LIST)))${relative}/Makefile`,
  );
  if (rewritten === text)
    throw new Error(`unexpected ${makefile}: no "include /usr/src/.../Makefile" line`);
  writeFileSync(makefile, rewritten);
}

/** The compiler the kernel was built with (CONFIG_CC_VERSION_TEXT) must be on PATH. */
function checkCompiler(headersDir: string): string {
  const config = readFileSync(path.join(headersDir, '.config'), 'utf8');
  const text = /^CONFIG_CC_VERSION_TEXT="([^"]*)"$/m.exec(config)?.[1] ?? '';
  const compiler = text.split(' ')[0];
  const major = /gcc-(\d+)$/.exec(compiler)?.[1];
  if (!compiler || !major)
    throw new Error(`cannot tell the kernel's compiler from CONFIG_CC_VERSION_TEXT="${text}"`);
  try {
    execFileSync(compiler, ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error(
      `the kernel was built with ${text}; building vkms needs ${compiler}: install gcc-${major} ` +
        '(add it to the package list in scripts/setup.sh)',
    );
  }
  return compiler;
}

/** Pulls drivers/gpu/drm/vkms out of the linux-source tarball without unpacking the rest. */
async function extractVkmsSources(
  sourceDeb: string,
  series: string,
  tierDir: string,
  vkmsDir: string,
  progress: (msg: string) => void,
): Promise<void> {
  const scratch = path.join(tierDir, 'source-scratch');
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const tarball = `./usr/src/linux-source-${series}.tar.xz`;
  progress(`extracting ${path.basename(tarball)} from ${path.basename(sourceDeb)}`);
  await runToolChecked('unpacking linux-source', 'sh', [
    '-c',
    'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "$3"',
    'sh',
    sourceDeb,
    scratch,
    tarball,
  ]);
  const tarPath = path.join(scratch, tarball);
  if (!existsSync(tarPath)) throw new Error(`${sourceDeb} holds no ${tarball}`);
  progress(
    `extracting drivers/gpu/drm/vkms from ${path.basename(tarball)} (decompresses ${Math.round(statSync(tarPath).size / 1e6)} MB of xz, about 10 s)`,
  );
  await runToolChecked('extracting vkms sources', 'tar', [
    '-xJf',
    tarPath,
    '-C',
    scratch,
    '--wildcards',
    `linux-source-${series}/drivers/gpu/drm/vkms/*`,
  ]);
  const extracted = path.join(scratch, `linux-source-${series}/drivers/gpu/drm/vkms`);
  if (!existsSync(path.join(extracted, 'Makefile')))
    throw new Error(`no drivers/gpu/drm/vkms/Makefile in ${tarball}`);
  rmSync(vkmsDir, { recursive: true, force: true });
  renameSync(extracted, vkmsDir);
  rmSync(scratch, { recursive: true, force: true });
}

/**
 * `names` and their dependencies, each after everything it needs. modules.dep lists a module's
 * dependencies so that the last one loads first, hence the reversal.
 */
export function loadOrder(names: string[], modules: Map<string, { deps: string[] }>): string[] {
  return orderModules(
    names.map((name) => name.replace(/-/g, '_')),
    (name) => {
      const module = modules.get(name);
      if (!module) throw new Error(`module ${name} is not in modules.dep`);
      return [...module.deps].reverse();
    },
  );
}

/** Builds the initramfs unless one for the same inputs (init script, busybox, modules) exists. */
async function ensureInitramfs(
  cacheDir: string,
  manifest: Manifest,
  progress: (msg: string) => void,
): Promise<{ path: string; built: boolean }> {
  const busyboxPath = '/bin/busybox';
  if (!existsSync(busyboxPath)) {
    throw new Error(
      'no /bin/busybox: install busybox-static (scripts/setup.sh) for the kernel-tier initramfs',
    );
  }
  const busybox = readFileSync(busyboxPath);
  if (elfHasInterpreter(busybox)) {
    // A dynamic busybox would not run in an initramfs that holds no libc.
    throw new Error(
      '/bin/busybox is not statically linked: install busybox-static (scripts/setup.sh)',
    );
  }
  const init = readFileSync(initScriptPath);
  const modulesDir = path.join(
    cacheDir,
    manifest.modulesRoot,
    'lib/modules',
    manifest.kernelRelease,
  );
  const modules = parseModulesDep(readFileSync(path.join(modulesDir, 'modules.dep'), 'utf8'));
  const order = loadOrder(bootModules, modules);
  const key = createHash('sha256')
    .update(init)
    .update(busybox)
    .update(manifest.kernelRelease)
    .update(order.map((name) => modules.get(name)?.file).join('\n'))
    .digest('hex')
    .slice(0, 16);
  const target = path.join(cacheDir, manifest.kernelRelease, `initramfs-${key}.cpio`);
  if (existsSync(target)) {
    const now = new Date();
    utimesSync(target, now, now);
    return { path: target, built: false };
  }

  progress(`building initramfs (busybox, ${order.join(' ')})`);
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'tmp', 'mnt', 'newroot', 'modules'].map((dir): CpioEntry => ({
      kind: 'dir',
      path: dir,
    })),
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'file', path: 'init', data: init, mode: 0o755 },
    { kind: 'file', path: 'modules/order', data: Buffer.from(`${order.join('\n')}\n`) },
  ];
  for (const name of order) {
    const file = path.join(modulesDir, modules.get(name)?.file ?? '');
    entries.push({ kind: 'file', path: `modules/${name}.ko`, data: decompressModule(file) });
  }
  // Other checkouts sharing this cache may boot older variants right now: only remove ones
  // unused for a week (each use refreshes its mtime).
  const weekAgo = Date.now() - 7 * 24 * 3600 * 1000;
  for (const old of readdirSync(path.dirname(target))) {
    const file = path.join(path.dirname(target), old);
    if (/^initramfs-[0-9a-f]+\.cpio$/.test(old) && statSync(file).mtimeMs < weekAgo)
      rmSync(file, { force: true });
  }
  writeFileAtomic(target, buildCpio(entries));
  return { path: target, built: true };
}

function decompressModule(file: string): Buffer {
  const tools: Record<string, string[]> = {
    '.xz': ['xz', '-dc'],
    '.zst': ['zstd', '-dcq'],
    '.gz': ['gzip', '-dc'],
  };
  const tool = tools[path.extname(file)];
  if (!tool) return readFileSync(file);
  try {
    return execFileSync(tool[0], [...tool.slice(1), file], { maxBuffer: 256 << 20 });
  } catch (error) {
    throw new Error(
      `decompressing ${file} with ${tool[0]} failed (install xz-utils/zstd via scripts/setup.sh): ${String(error)}`,
    );
  }
}

/** True if the ELF file has a PT_INTERP program header, i.e. is dynamically linked. */
function elfHasInterpreter(elf: Buffer): boolean {
  const is64LittleEndian =
    elf.length >= 64 && elf.readUInt32BE(0) === 0x7f454c46 && elf[4] === 2 && elf[5] === 1;
  if (!is64LittleEndian) throw new Error('/bin/busybox is not a 64-bit little-endian ELF file');
  const tableOffset = Number(elf.readBigUInt64LE(32));
  const entrySize = elf.readUInt16LE(54);
  const count = elf.readUInt16LE(56);
  for (let i = 0; i < count; i++) {
    const offset = tableOffset + i * entrySize;
    if (offset + 4 > elf.length) break;
    if (elf.readUInt32LE(offset) === 3) return true;
  }
  return false;
}
