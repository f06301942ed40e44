// The desktop guest: a real desktop stack nobody here wrote. The guest boots the test guest's
// Debian 6.1 kernel, mounts the host's root read-only over virtio-9p with a tmpfs on top (as the
// kernel tier does) and runs the host's own Debian weston on the guest's virtio-gpu DRM device
// (pixman renderer, desktop shell, weston-terminal), with Debian's udev tagging the virtio-input
// devices for libinput. Two read-only layers sit between the host root and the tmpfs:
//   - the guest kernel's modules (only the few the desktop needs, with their dependencies),
//   - Debian's `udev` package (the host has no udevd), unpacked, never installed.
// Both are built once into ${XDG_CACHE_HOME:-~/.cache}/guestfb/desktop; a manifest lets later runs
// skip apt (and the network) entirely. The initramfs holds busybox, the 9p/overlay modules and
// examples/guest/desktop-init.sh; the session itself is examples/guest/desktop-session.sh.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildCpio, type CpioEntry } from './cpio.js';
import {
  cacheDir,
  debFileName,
  ensureAptIndex,
  extractDeb,
  hostAptSources,
  hostCodename,
  withCacheLock,
} from './debian-fetch.js';
import {
  ensureGuest,
  orderModules,
  parseModulesDep,
  repoRoot,
  type GuestImage,
} from './guest-image.js';

const execFileAsync = promisify(execFile);

export interface DesktopGuest extends GuestImage {
  /** The folder shared with the guest as its layers (virtio-9p tag `layers`). */
  layersDir: string;
  /** Names of folders in layersDir the guest stacks over the host root, top first. */
  layers: string[];
}

/** Loaded by the initramfs before the host root is reachable (dependencies are added). */
export const initramfsModules = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];
/** In the modules layer for udev to load by modalias (dependencies are added). */
export const layerModules = [
  ...initramfsModules,
  'virtio-gpu',
  'virtio_input',
  'evdev',
  'virtio_console',
];
/** What the desktop runs from the host's root; `npm run setup` installs the weston package. */
export const hostDesktopFiles = [
  '/usr/bin/weston',
  '/usr/bin/weston-terminal',
  '/usr/lib/x86_64-linux-gnu/weston-desktop-shell',
  '/usr/lib/x86_64-linux-gnu/weston/desktop-shell.so',
  '/usr/lib/x86_64-linux-gnu/libweston-10/drm-backend.so',
  '/usr/share/X11/xkb/rules/evdev',
];
const busyboxPath = '/bin/busybox';
/** Bump when the layout of the cached layers changes. */
const layerFormat = 1;

interface DesktopManifest {
  format: number;
  kernelRelease: string;
  kernelPackage: string;
  kernelVersion: string;
  udevVersion: string;
  moduleKey: string;
  /** Relative to the desktop cache folder. */
  modulesLayer: string;
  udevLayer: string;
  /** Initramfs modules in load order, as files under modulesLayer's lib/modules/<release>. */
  initramfsModules: { name: string; file: string }[];
}

function sha256(...parts: (string | Buffer)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex').slice(0, 16);
}

const normalize = (name: string) => name.replace(/-/g, '_');

/**
 * On a merged-/usr host (/lib, /bin, /sbin are symlinks into /usr) a layer's top-level lib, bin
 * and sbin folders would hide those symlinks in the overlay: move their contents under usr/.
 */
async function mergeUsr(layer: string): Promise<void> {
  for (const top of ['bin', 'sbin', 'lib', 'lib64']) {
    const hostEntry = `/${top}`;
    const layerDir = path.join(layer, top);
    if (!existsSync(layerDir) || !existsSync(hostEntry) || !lstatSync(hostEntry).isSymbolicLink())
      continue;
    await mkdir(path.join(layer, 'usr', top), { recursive: true });
    await execFileAsync('cp', ['-a', `${layerDir}/.`, path.join(layer, 'usr', top)]);
    await rm(layerDir, { recursive: true, force: true });
  }
}

async function decompressModule(file: string, out: string): Promise<void> {
  if (file.endsWith('.xz'))
    await execFileAsync('sh', ['-c', 'xz -dc "$1" > "$2"', 'sh', file, out]);
  else if (file.endsWith('.zst')) await execFileAsync('zstd', ['-q', '-d', '-f', file, '-o', out]);
  else await copyFile(file, out);
}

async function buildLayers(
  desktopDir: string,
  guest: GuestImage,
  progress: (msg: string) => void,
): Promise<DesktopManifest> {
  const codename = hostCodename();
  // The host's own release (bookworm, -updates, -security): the kernel the test guest boots and
  // the udev that matches the host's userland.
  const sources = hostAptSources().filter((s) =>
    s.suites.every((suite) => suite === codename || suite.startsWith(`${codename}-`)),
  );
  const index = await ensureAptIndex({ dir: path.join(desktopDir, 'apt'), sources, progress });
  const kernelPackage = `linux-image-${guest.kernelRelease}`;
  const kernel = await index.resolve(kernelPackage);
  const udev = await index.resolve('udev');
  // The test guest's cache usually holds the kernel package already.
  const cachedKernelDeb = path.join(cacheDir('guest'), 'debs', debFileName(kernel));
  const downloads = path.join(desktopDir, 'debs');
  const [udevDeb] = await index.download([udev], downloads, progress);
  const kernelDeb = existsSync(cachedKernelDeb)
    ? cachedKernelDeb
    : (await index.download([kernel], downloads, progress))[0]!;

  const moduleKey = sha256(String(layerFormat), kernel.version, layerModules.join(','));
  const modulesLayer = `modules-${guest.kernelRelease}-${moduleKey}`;
  const udevLayer = `udev-${sha256(String(layerFormat), udev.version)}`;
  const scratch = await mkdtemp(path.join(desktopDir, '.build-'));
  try {
    progress(`extracting ${path.basename(kernelDeb)} (about 400 MB unpacked, for its modules)`);
    const kernelRoot = path.join(scratch, 'kernel');
    await extractDeb(kernelDeb, kernelRoot);
    await execFileAsync('depmod', ['-b', kernelRoot, guest.kernelRelease]);
    const releaseDir = (root: string) => path.join(root, 'lib/modules', guest.kernelRelease);
    const all = parseModulesDep(
      await readFile(path.join(releaseDir(kernelRoot), 'modules.dep'), 'utf8'),
    );
    const dependsOf = (name: string) => all.get(normalize(name))?.deps ?? [];
    for (const name of layerModules) {
      if (!all.has(normalize(name)))
        throw new Error(`desktop-image: no module ${name} in ${kernelPackage}`);
    }
    const wanted = orderModules(layerModules, dependsOf);
    const layer = path.join(scratch, 'modules-layer');
    // Stored uncompressed: busybox's insmod in the initramfs cannot read .ko.xz.
    for (const name of wanted) {
      const file = all.get(normalize(name))!.file;
      const out = path.join(releaseDir(layer), file.replace(/\.ko\.\w+$/, '.ko'));
      await mkdir(path.dirname(out), { recursive: true });
      await decompressModule(path.join(releaseDir(kernelRoot), file), out);
    }
    for (const meta of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
      await copyFile(path.join(releaseDir(kernelRoot), meta), path.join(releaseDir(layer), meta));
    }
    await execFileAsync('depmod', ['-b', layer, guest.kernelRelease]);
    const inLayer = parseModulesDep(
      await readFile(path.join(releaseDir(layer), 'modules.dep'), 'utf8'),
    );
    const initramfs = orderModules(initramfsModules, dependsOf).map((name) => ({
      name: normalize(name),
      file: inLayer.get(normalize(name))!.file,
    }));
    await mergeUsr(layer);

    progress(`unpacking udev ${udev.version}`);
    const udevRoot = path.join(scratch, 'udev-layer');
    await extractDeb(udevDeb!, udevRoot);
    // Documentation and the SysV script are of no use in the guest.
    await rm(path.join(udevRoot, 'usr/share'), { recursive: true, force: true });
    await rm(path.join(udevRoot, 'etc/init.d'), { recursive: true, force: true });
    await mergeUsr(udevRoot);

    for (const [from, to] of [
      [layer, modulesLayer],
      [udevRoot, udevLayer],
    ] as const) {
      await rm(path.join(desktopDir, to), { recursive: true, force: true });
      await rename(from, path.join(desktopDir, to));
    }
    return {
      format: layerFormat,
      kernelRelease: guest.kernelRelease,
      kernelPackage,
      kernelVersion: kernel.version,
      udevVersion: udev.version,
      moduleKey,
      modulesLayer,
      udevLayer,
      initramfsModules: initramfs,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Where a module file of the manifest lives in the (possibly /usr-merged) modules layer. */
function layerModuleFile(desktopDir: string, manifest: DesktopManifest, file: string): string {
  const layer = path.join(desktopDir, manifest.modulesLayer);
  for (const lib of ['usr/lib', 'lib']) {
    const candidate = path.join(layer, lib, 'modules', manifest.kernelRelease, file);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`desktop-image: ${file} is missing from ${layer}`);
}

function manifestUsable(
  desktopDir: string,
  manifest: DesktopManifest | undefined,
  guest: GuestImage,
) {
  if (
    !manifest ||
    manifest.format !== layerFormat ||
    manifest.kernelRelease !== guest.kernelRelease
  )
    return false;
  if (
    manifest.moduleKey !==
    sha256(String(layerFormat), manifest.kernelVersion, layerModules.join(','))
  )
    return false;
  try {
    for (const { file } of manifest.initramfsModules) layerModuleFile(desktopDir, manifest, file);
  } catch {
    return false;
  }
  return existsSync(path.join(desktopDir, manifest.udevLayer));
}

/**
 * Makes sure the desktop guest's kernel, initramfs and layers are in the cache and returns them.
 * The first run downloads udev (2 MB) and, unless the test guest's cache has it, the kernel
 * package; later runs touch no network. Checks that the host has weston.
 */
export async function ensureDesktopGuest(
  progress: (msg: string) => void = () => {},
): Promise<DesktopGuest> {
  const missing = hostDesktopFiles.filter((file) => !existsSync(file));
  if (missing.length) {
    throw new Error(
      `desktop-image: the desktop guest runs the host's weston; missing: ${missing.join(', ')} ` +
        '(run `npm run setup`, which installs weston)',
    );
  }
  if (!existsSync(busyboxPath)) {
    throw new Error(`desktop-image: ${busyboxPath} is missing (install busybox-static)`);
  }
  const guest = await ensureGuest(progress);
  const desktopDir = cacheDir('desktop');
  return withCacheLock(desktopDir, async () => {
    const manifestFile = path.join(desktopDir, 'manifest.json');
    let manifest: DesktopManifest | undefined;
    try {
      manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as DesktopManifest;
    } catch {
      manifest = undefined;
    }
    if (!manifestUsable(desktopDir, manifest, guest)) {
      manifest = await buildLayers(desktopDir, guest, progress);
      await writeFile(`${manifestFile}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
      await rename(`${manifestFile}.tmp`, manifestFile);
      for (const old of readdirSync(desktopDir)) {
        const current = [manifest.modulesLayer, manifest.udevLayer];
        if (/^(modules|udev)-/.test(old) && !current.includes(old))
          await rm(path.join(desktopDir, old), { recursive: true, force: true });
      }
    }
    const ready = manifest!;
    const examples = path.join(repoRoot(), 'examples', 'guest');
    const init = await readFile(path.join(examples, 'desktop-init.sh'));
    const session = await readFile(path.join(examples, 'desktop-session.sh'));
    const busybox = readFileSync(busyboxPath);
    const modules = await Promise.all(
      ready.initramfsModules.map(async ({ name, file }) => ({
        name,
        data: await readFile(layerModuleFile(desktopDir, ready, file)),
      })),
    );
    const key = sha256(init, session, busybox, ready.modulesLayer, ...modules.map((m) => m.name));
    const initrd = path.join(desktopDir, `initramfs-${key}.cpio`);
    if (!existsSync(initrd)) {
      progress(`building ${path.basename(initrd)}`);
      const entries: CpioEntry[] = [
        ...['bin', 'dev', 'etc', 'etc/guestfb', 'lib', 'lib/modules', 'mnt', 'proc', 'sys'].map(
          (p): CpioEntry => ({ kind: 'dir', path: p }),
        ),
        { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
        { kind: 'file', path: 'init', data: init, mode: 0o755 },
        { kind: 'file', path: 'etc/guestfb/desktop-session.sh', data: session, mode: 0o755 },
        { kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
        {
          kind: 'file',
          path: 'etc/guestfb/modules',
          data: Buffer.from(`${modules.map((m) => m.name).join('\n')}\n`),
        },
        ...modules.map(({ name, data }): CpioEntry => ({
          kind: 'file',
          path: `lib/modules/${name}.ko`,
          data,
        })),
      ];
      const scratch = `${initrd}.${process.pid}.tmp`;
      await writeFile(scratch, buildCpio(entries));
      await rename(scratch, initrd);
      for (const old of readdirSync(desktopDir)) {
        if (/^initramfs-.*\.cpio$/.test(old) && path.join(desktopDir, old) !== initrd)
          await rm(path.join(desktopDir, old), { force: true });
      }
    }
    if (desktopDir.includes(','))
      throw new Error(`desktop-image: QEMU's -virtfs cannot share ${desktopDir} (a comma)`);
    return {
      ...guest,
      initrd,
      modules: modules.map((m) => m.name),
      programs: [],
      layersDir: desktopDir,
      layers: [ready.modulesLayer, ready.udevLayer],
    };
  });
}

/** Boot options that make bootGuest start the desktop guest (merge with your own). */
export function desktopBootArgs(desktop: DesktopGuest): {
  kernelArgs: string[];
  extraArgs: string[];
} {
  return {
    kernelArgs: [`guestfb.layers=${desktop.layers.join(':')}`],
    extraArgs: [
      '-virtfs',
      'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
      '-virtfs',
      `local,path=${desktop.layersDir},mount_tag=layers,security_model=none,readonly=on`,
    ],
  };
}
