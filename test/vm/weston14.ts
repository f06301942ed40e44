// weston 14 from bookworm-backports with its GL renderer on backports Mesa (llvmpipe): a
// compositor nobody here wrote that imports dma-bufs through zwp_linux_dmabuf_v1 (Debian 12's
// weston 10 and Mesa 22.3 offer none). The debs are unpacked into
// ${XDG_CACHE_HOME:-~/.cache}/guestfb/weston14 (never installed); a manifest records what was
// fetched, so later runs touch no network. The kernel-tier VM sees the same folder through its
// read-only view of the host's root, so the guest test runs this tree as it is.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  cacheDir,
  downloadAndUnpack,
  ensureBackportsIndex,
  readManifest,
  removeOtherTrees,
  withCacheLock,
  writeManifest,
  type ResolvedPackage,
} from '../../examples/qemu/debian-fetch.js';
import { missingLibraries as missingLibrariesOf } from '../../examples/qemu/ldd.js';

const execFileAsync = promisify(execFile);

/** The weston major version this tier is about (its libweston package is libweston-<major>-0). */
export const westonMajor = 14;

/**
 * Backports packages unpacked into one tree: weston and libweston, libweston's -dev package for
 * weston's own protocol XML (weston_capture_v1), libwayland 1.23, Mesa's EGL/GBM/gallium and the
 * libdrm it was built against. libglvnd (libEGL.so.1, libGLESv2.so.2) and the rest come from the
 * host (scripts/setup.sh installs them); `missingLibraries` checks that nothing is left out.
 */
export const westonPackages = [
  'weston',
  `libweston-${westonMajor}-0`,
  `libweston-${westonMajor}-dev`,
  'libwayland-client0',
  'libwayland-server0',
  'libwayland-cursor0',
  'libwayland-egl1',
  'libegl-mesa0',
  'libgbm1',
  'libgl1-mesa-dri',
  'mesa-libgallium',
  'libdrm2',
  'libdrm-common',
  'libdrm-amdgpu1',
  'libdrm-intel1',
];

/** weston's modules this tier loads; each must resolve all its libraries. */
const usedModules = ['headless-backend.so', 'gl-renderer.so', 'kiosk-shell.so'];

/** A ready weston 14 tree. */
export interface Weston14 {
  /** The unpacked tree (holds usr/). */
  root: string;
  /** usr/bin/weston in the tree. */
  weston: string;
  /** Debian version of the weston package, e.g. 14.0.2-1~bpo12+1. */
  version: string;
  /** `weston --version`, e.g. "weston 14.0.2". */
  versionString: string;
  /** Debian versions of every unpacked package. */
  packages: { name: string; version: string }[];
  /** LD_LIBRARY_PATH entries, in order. */
  libraryPath: string[];
  /** WESTON_MODULE_MAP: module file name -> path in the tree. */
  modules: Map<string, string>;
  /** Mesa's glvnd EGL vendor file (__EGL_VENDOR_LIBRARY_FILENAMES). */
  eglVendorFile: string;
  /** Mesa's DRI drivers (LIBGL_DRIVERS_PATH) and GBM backends (GBM_BACKENDS_PATH). */
  driDir: string;
  gbmDir: string;
  /** weston-output-capture.xml from libweston's -dev package. */
  captureProtocolXml: string;
  cacheDir: string;
  /** True when this call downloaded and unpacked nothing. */
  fromCache: boolean;
}

interface Manifest {
  format: 1;
  packages: { name: string; version: string }[];
  /** Folder of the unpacked tree, relative to the cache folder. */
  root: string;
  versionString: string;
  createdAt: string;
}

const manifestFormat = 1;

/** `${XDG_CACHE_HOME:-~/.cache}/guestfb/weston14`. */
export function weston14CacheDir(): string {
  return cacheDir(`weston${westonMajor}`);
}

function defaultProgress(message: string): void {
  process.stderr.write(`[guestfb weston${westonMajor}] ${message}\n`);
}

/** The multiarch library folder in the tree (usr/lib/<triplet>, the one holding libweston). */
function archLibDir(root: string): string {
  const libDir = path.join(root, 'usr', 'lib');
  const triplet = readdirSync(libDir).find(
    (name) =>
      name.includes('-linux-') && existsSync(path.join(libDir, name, `libweston-${westonMajor}`)),
  );
  if (!triplet)
    throw new Error(`weston${westonMajor}: no libweston-${westonMajor} under ${libDir}`);
  return path.join(libDir, triplet);
}

function treeFromManifest(dir: string, manifest: Manifest, fromCache: boolean): Weston14 {
  const root = path.join(dir, manifest.root);
  const lib = archLibDir(root);
  // libweston's modules (backends, renderers) and weston's own (shells); weston's frontend
  // library lives next to the shells. Its binary has a RUNPATH to the system's weston folder,
  // which on a host with Debian's weston 10 would load the wrong frontend: LD_LIBRARY_PATH wins.
  const moduleDirs = [path.join(lib, `libweston-${westonMajor}`), path.join(lib, 'weston')];
  const modules = new Map<string, string>();
  for (const moduleDir of moduleDirs) {
    for (const name of readdirSync(moduleDir).sort()) {
      if (name.endsWith('.so') && !name.startsWith('lib'))
        modules.set(name, path.join(moduleDir, name));
    }
  }
  return {
    root,
    weston: path.join(root, 'usr', 'bin', 'weston'),
    version: manifest.packages.find((p) => p.name === 'weston')?.version ?? '',
    versionString: manifest.versionString,
    packages: manifest.packages,
    libraryPath: [lib, path.join(lib, 'weston')],
    modules,
    eglVendorFile: path.join(root, 'usr', 'share', 'glvnd', 'egl_vendor.d', '50_mesa.json'),
    driDir: path.join(lib, 'dri'),
    gbmDir: path.join(lib, 'gbm'),
    captureProtocolXml: path.join(
      root,
      'usr',
      'share',
      `libweston-${westonMajor}`,
      'protocols',
      'weston-output-capture.xml',
    ),
    cacheDir: dir,
    fromCache,
  };
}

/** The manifest, if it is current and names a complete tree; otherwise undefined. */
function readTreeManifest(dir: string): Manifest | undefined {
  return readManifest<Manifest>(path.join(dir, 'manifest.json'), (manifest) => {
    if (manifest.format !== manifestFormat || typeof manifest.root !== 'string') return false;
    if (!westonPackages.every((name) => manifest.packages?.some((p) => p.name === name))) {
      return false;
    }
    const tree = treeFromManifest(dir, manifest, true);
    const files = [
      tree.weston,
      tree.eglVendorFile,
      tree.captureProtocolXml,
      tree.driDir,
      tree.gbmDir,
    ];
    return (
      files.every((file) => existsSync(file)) && usedModules.every((name) => tree.modules.has(name))
    );
  });
}

/** The environment weston runs with: the tree's libraries, modules and Mesa, on top of `base`. */
export function westonEnvironment(
  tree: Weston14,
  runtimeDir: string,
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  // A Wayland or X display in the caller's environment must not make weston nest in it.
  delete env.WAYLAND_DISPLAY;
  delete env.WAYLAND_SOCKET;
  delete env.DISPLAY;
  return {
    ...env,
    XDG_RUNTIME_DIR: runtimeDir,
    LD_LIBRARY_PATH: [...tree.libraryPath, base.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    WESTON_MODULE_MAP: [...tree.modules].map(([name, file]) => `${name}=${file}`).join(';'),
    __EGL_VENDOR_LIBRARY_FILENAMES: tree.eglVendorFile,
    LIBGL_DRIVERS_PATH: tree.driDir,
    GBM_BACKENDS_PATH: tree.gbmDir,
    // Mesa's software rasteriser: there is no GPU in the test machines or the VM.
    LIBGL_ALWAYS_SOFTWARE: '1',
    GALLIUM_DRIVER: 'llvmpipe',
  };
}

export interface WestonRunOptions {
  width: number;
  height: number;
  /** Socket name inside XDG_RUNTIME_DIR. */
  socket: string;
}

/**
 * weston's arguments: headless backend, GL renderer (the one with dma-buf import), the kiosk
 * shell (every toplevel fullscreen on the output), no idle blanking, and --debug, which enables
 * weston_capture_v1.
 */
export function westonArguments(options: WestonRunOptions): string[] {
  for (const [what, value] of [
    ['width', options.width],
    ['height', options.height],
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > 16384) {
      throw new RangeError(`weston ${what} must be an integer in 1..16384, not ${value}`);
    }
  }
  if (!/^[A-Za-z0-9._-]+$/.test(options.socket)) {
    throw new TypeError(`bad weston socket name ${JSON.stringify(options.socket)}`);
  }
  return [
    '--backend=headless',
    '--renderer=gl',
    `--width=${options.width}`,
    `--height=${options.height}`,
    `--socket=${options.socket}`,
    '--idle-time=0',
    '--shell=kiosk',
    '--debug',
  ];
}

/**
 * Libraries that the weston binary, the modules this tier uses and Mesa's EGL, GBM and gallium
 * libraries cannot resolve (or resolve at too old a version), as `file: what ldd said` strings.
 */
export async function missingLibraries(tree: Weston14): Promise<string[]> {
  const lib = tree.libraryPath[0]!;
  const files = [tree.weston, ...usedModules.map((name) => tree.modules.get(name)!)];
  files.push(path.join(lib, 'libEGL_mesa.so.0'), path.join(tree.gbmDir, 'dri_gbm.so'));
  files.push(
    ...readdirSync(lib)
      .filter((name) => name.startsWith('libgallium'))
      .map((name) => path.join(lib, name)),
  );
  return missingLibrariesOf(files, westonEnvironment(tree, '/nonexistent'));
}

/**
 * Reads the cached tree without touching the network (for the guest side of the kernel tier).
 * Throws when `ensureWeston14` has not prepared it.
 */
export function cachedWeston14(dir = weston14CacheDir()): Weston14 {
  const manifest = readTreeManifest(dir);
  if (!manifest) {
    throw new Error(
      `weston${westonMajor}: no complete tree in ${dir}; run ensureWeston14() on the host first`,
    );
  }
  return treeFromManifest(dir, manifest, true);
}

/**
 * Makes sure weston 14 and backports Mesa are unpacked in the cache folder and that their
 * libraries resolve on this host. The first run updates a private bookworm-backports apt index
 * and downloads about 11 MB; later runs read the manifest and touch no network.
 */
export async function ensureWeston14(
  progress: (message: string) => void = defaultProgress,
): Promise<Weston14> {
  const dir = weston14CacheDir();
  let tree: Weston14;
  const cached = readTreeManifest(dir);
  if (cached) {
    tree = treeFromManifest(dir, cached, true);
  } else {
    tree = await withCacheLock(dir, async () => {
      // Another process may have finished while this one waited for the lock.
      const again = readTreeManifest(dir);
      if (again) return treeFromManifest(dir, again, true);
      return treeFromManifest(dir, await fetchAndUnpack(dir, progress), false);
    });
  }
  const missing = await missingLibraries(tree);
  if (missing.length > 0) {
    throw new Error(
      `weston${westonMajor}: shared libraries missing for weston ${tree.version} and Mesa ` +
        `(install the Debian packages that provide them; scripts/setup.sh lists them):\n  ` +
        missing.join('\n  '),
    );
  }
  return tree;
}

async function fetchAndUnpack(dir: string, progress: (message: string) => void): Promise<Manifest> {
  const index = await ensureBackportsIndex(path.join(dir, 'apt'), progress);
  const resolved: ResolvedPackage[] = [];
  for (const name of westonPackages) resolved.push(await index.resolve(name));
  const weston = resolved[0]!;
  if (!weston.version.startsWith(`${westonMajor}.`)) {
    throw new Error(
      `weston${westonMajor}: backports now has weston ${weston.version}, not ${westonMajor}.x`,
    );
  }
  // Mesa's pieces must be one build (they depend on each other with "=").
  const mesa = resolved.filter((p) =>
    /^(libegl-mesa0|libgbm1|libgl1-mesa-dri|mesa-libgallium)$/.test(p.name),
  );
  if (new Set(mesa.map((p) => p.version)).size !== 1) {
    throw new Error(
      `weston${westonMajor}: backports Mesa packages disagree on their version: ` +
        mesa.map((p) => `${p.name} ${p.version}`).join(', '),
    );
  }
  const rootName = await downloadAndUnpack(index, resolved, dir, progress);
  const partial: Manifest = {
    format: manifestFormat,
    packages: resolved.map((p) => ({ name: p.name, version: p.version })),
    root: rootName,
    versionString: '',
    createdAt: new Date().toISOString(),
  };
  const tree = treeFromManifest(dir, partial, false);
  const versionString = await westonVersion(tree);
  if (!versionString.startsWith(`weston ${westonMajor}.`)) {
    throw new Error(
      `weston${westonMajor}: the unpacked weston reports "${versionString}" (wrong frontend library loaded?)`,
    );
  }
  const manifest: Manifest = { ...partial, versionString };
  writeManifest(path.join(dir, 'manifest.json'), manifest);
  await removeOtherTrees(dir, 'root-', rootName);
  progress(`${versionString} ready (Mesa ${mesa[0]!.version})`);
  return manifest;
}

/** First line of `weston --version` run with the tree's environment. */
async function westonVersion(tree: Weston14): Promise<string> {
  try {
    const { stdout } = await execFileAsync(tree.weston, ['--version'], {
      env: westonEnvironment(tree, '/nonexistent'),
    });
    return stdout.split('\n')[0]!.trim();
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(
      `weston${westonMajor}: the unpacked weston does not run: ${e.stderr || e.message}`,
    );
  }
}
