// Fetches Debian packages into a cache folder without touching the host's apt configuration or
// installing anything: a private apt index (its own sources, lists and cache folders) answers
// version queries, `apt-get download` fetches the .deb files and `dpkg-deb -x` unpacks them.
//
// Used by the QEMU tier (bookworm-backports QEMU 10) and the guest image (bookworm's 6.1 kernel);
// the kernel tier can reuse it as well: `ensureAptIndex({ dir, suites: ['bookworm-backports'] })`.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile, mkdtemp } from 'node:fs/promises';
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** One deb822 stanza (or one `deb` line) of an apt sources file. */
export interface AptSource {
  uris: string[];
  suites: string[];
  components: string[];
  signedBy?: string;
}

/** One deb822 paragraph: field name (lower case) to value (continuation lines joined by \n). */
export type Deb822Paragraph = Map<string, string>;

/** Parses deb822 text (apt .sources files, `apt-cache show` output) into paragraphs. */
export function parseDeb822(text: string): Deb822Paragraph[] {
  const paragraphs: Deb822Paragraph[] = [];
  let current: Deb822Paragraph | undefined;
  let lastField: string | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      current = undefined;
      lastField = undefined;
      continue;
    }
    if (line.startsWith('#')) continue;
    if (/^[ \t]/.test(line)) {
      if (current && lastField !== undefined) {
        current.set(lastField, `${current.get(lastField)}\n${line.trim()}`);
      }
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (!current) {
      current = new Map();
      paragraphs.push(current);
    }
    lastField = line.slice(0, colon).trim().toLowerCase();
    current.set(lastField, line.slice(colon + 1).trim());
  }
  return paragraphs;
}

/** The deb822 stanzas (`Types: deb`, `URIs:`, `Suites:`, ...) that list binary packages. */
export function parseDeb822Sources(text: string): AptSource[] {
  const sources: AptSource[] = [];
  for (const fields of parseDeb822(text)) {
    const words = (key: string) => (fields.get(key) ?? '').split(/\s+/).filter(Boolean);
    if (!words('types').includes('deb')) continue;
    if (fields.get('enabled')?.toLowerCase() === 'no') continue;
    const source: AptSource = {
      uris: words('uris'),
      suites: words('suites'),
      components: words('components'),
    };
    const signedBy = fields.get('signed-by');
    // A multi-line value is an inline key, not a keyring path.
    if (signedBy && !signedBy.includes('\n')) source.signedBy = signedBy;
    if (source.uris.length && source.suites.length) sources.push(source);
  }
  return sources;
}

/** Parses one-line `deb [options] URI suite component...` entries. */
export function parseOneLineSources(text: string): AptSource[] {
  const sources: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const match = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!match) continue;
    const source: AptSource = {
      uris: [match[2]!],
      suites: [match[3]!],
      components: match[4]!.split(/\s+/).filter(Boolean),
    };
    const signedBy = /signed-by=(\S+)/.exec(match[1] ?? '');
    if (signedBy) source.signedBy = signedBy[1]!;
    sources.push(source);
  }
  return sources;
}

/** The host's apt sources, read now from /etc/apt (sources.list.d/*.sources and sources.list). */
export function hostAptSources(etcApt = '/etc/apt'): AptSource[] {
  const sources: AptSource[] = [];
  const partsDir = path.join(etcApt, 'sources.list.d');
  if (existsSync(partsDir)) {
    for (const name of readdirSync(partsDir).sort()) {
      const file = path.join(partsDir, name);
      if (name.endsWith('.sources'))
        sources.push(...parseDeb822Sources(readFileSync(file, 'utf8')));
      else if (name.endsWith('.list'))
        sources.push(...parseOneLineSources(readFileSync(file, 'utf8')));
    }
  }
  const list = path.join(etcApt, 'sources.list');
  if (existsSync(list)) sources.push(...parseOneLineSources(readFileSync(list, 'utf8')));
  return sources;
}

/** Debian's release codename on this host (from /etc/os-release), e.g. `bookworm`. */
export function hostCodename(): string {
  const text = readFileSync('/etc/os-release', 'utf8');
  const match = /^VERSION_CODENAME=["']?([a-z]+)/m.exec(text);
  if (!match) throw new Error('debian-fetch: /etc/os-release has no VERSION_CODENAME');
  return match[1]!;
}

/**
 * The mirror URI the host uses for its main Debian suite (the source that lists the release
 * codename itself, not -security, with component main), so private indexes download from the
 * same place.
 */
export function hostMirrorUri(): string {
  const codename = hostCodename();
  for (const source of hostAptSources()) {
    if (!source.suites.includes(codename) || !source.components.includes('main')) continue;
    const uri = source.uris.find((candidate) => /^(https?|file):/.test(candidate));
    if (uri) return uri.replace(/\/+$/, '');
  }
  throw new Error(
    `debian-fetch: no http(s) or file apt source for Debian ${codename} main in /etc/apt`,
  );
}

/** A package version as the private index resolves it. */
export interface ResolvedPackage {
  name: string;
  version: string;
  architecture: string;
  /** Size of the .deb in bytes, from the index. */
  size: number;
  sha256: string;
  depends: string;
}

export interface AptIndexOptions {
  /** Folder for the private configuration, lists and apt cache. Created if missing. */
  dir: string;
  /** Sources to index; default: the host's mirror with `suites`/`components`. */
  sources?: AptSource[];
  /** Suites on the host's mirror, used when `sources` is absent, e.g. ['bookworm-backports']. */
  suites?: string[];
  components?: string[];
  /** Re-run `apt-get update` when the lists are older than this (default one day). */
  maxAgeMs?: number;
  progress?: (msg: string) => void;
}

const archiveKeyring = '/usr/share/keyrings/debian-archive-keyring.gpg';

function renderDeb822(sources: AptSource[]): string {
  return sources
    .map((s) =>
      [
        'Types: deb',
        `URIs: ${s.uris.join(' ')}`,
        `Suites: ${s.suites.join(' ')}`,
        `Components: ${s.components.join(' ')}`,
        `Signed-By: ${s.signedBy ?? archiveKeyring}`,
      ].join('\n'),
    )
    .join('\n\n')
    .concat('\n');
}

/** apt-get/apt-cache run against a private index (see ensureAptIndex). */
export class AptIndex {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The `-o` options that point apt at this index only (not the host's sources or status). */
  aptOptions(): string[] {
    const options = [
      `Dir::Etc::SourceList=/dev/null`,
      `Dir::Etc::SourceParts=${path.join(this.dir, 'sources')}`,
      // The host's pinning must not change which versions resolve either.
      'Dir::Etc::Preferences=/dev/null',
      `Dir::Etc::PreferencesParts=${path.join(this.dir, 'preferences.d')}`,
      `Dir::State=${path.join(this.dir, 'state')}`,
      `Dir::State::Lists=${path.join(this.dir, 'lists')}`,
      `Dir::Cache=${path.join(this.dir, 'cache')}`,
      `Dir::Log=${path.join(this.dir, 'log')}`,
      // Resolve against the archive alone: what the host has installed must not change answers.
      `Dir::State::status=/dev/null`,
      'Debug::NoLocking=1',
      'Acquire::Languages=none',
    ];
    // As root apt drops privileges to _apt, which cannot write into a private cache folder.
    if (process.getuid?.() === 0) options.push('APT::Sandbox::User=root');
    return options.flatMap((o) => ['-o', o]);
  }

  async run(tool: 'apt-get' | 'apt-cache', args: string[], cwd?: string): Promise<string> {
    return (await this.runWithOutput(tool, args, cwd)).stdout;
  }

  private async runWithOutput(
    tool: 'apt-get' | 'apt-cache',
    args: string[],
    cwd?: string,
  ): Promise<{ stdout: string; stderr: string }> {
    try {
      return await execFileAsync(tool, [...this.aptOptions(), ...args], {
        cwd,
        maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, LC_ALL: 'C' },
      });
    } catch (error) {
      const e = error as { stderr?: string; message: string };
      throw new Error(`debian-fetch: ${tool} ${args.join(' ')} failed: ${e.stderr || e.message}`);
    }
  }

  /** `apt-get update`; a source that failed to download fails it even when apt exits 0. */
  async update(): Promise<void> {
    const { stdout, stderr } = await this.runWithOutput('apt-get', ['update', '-q']);
    const failures = `${stdout}\n${stderr}`
      .split('\n')
      .filter((line) => /^(E:|W: Failed to fetch|Err:)/.test(line));
    if (failures.length > 0) {
      throw new Error(
        `debian-fetch: apt-get update in ${this.dir} failed (the first run needs the Debian ` +
          `mirror):\n${failures.slice(0, 20).join('\n')}`,
      );
    }
  }

  /** The candidate version of `name` in this index (throws if the index does not have it). */
  async resolve(name: string): Promise<ResolvedPackage> {
    const text = await this.run('apt-cache', ['show', '--no-all-versions', name]);
    const fields = parseDeb822(text).find((p) => p.get('package') === name);
    const version = fields?.get('version');
    if (!fields || !version) throw new Error(`debian-fetch: ${name} not found in ${this.dir}`);
    return {
      name,
      version,
      architecture: fields.get('architecture') ?? '',
      size: Number(fields.get('size') ?? 0),
      sha256: fields.get('sha256') ?? '',
      depends: fields.get('depends') ?? '',
    };
  }

  /** Names in `name`'s Depends that match `pattern` (first alternative of each entry). */
  async dependencies(name: string, pattern: RegExp): Promise<string[]> {
    const { depends } = await this.resolve(name);
    return depends
      .split(',')
      .map(
        (entry) =>
          entry
            .split('|')[0]!
            .trim()
            .split(/[\s(:]/)[0]!,
      )
      .filter((dep) => pattern.test(dep));
  }

  /**
   * Downloads each package (at its resolved version) into `destDir` as `<name>_<version>.deb`
   * (epoch colon replaced), skipping files that already exist. Returns the paths in order.
   */
  async download(
    packages: ResolvedPackage[],
    destDir: string,
    progress?: (msg: string) => void,
  ): Promise<string[]> {
    await mkdir(destDir, { recursive: true });
    const paths: string[] = [];
    for (const pkg of packages) {
      const target = path.join(destDir, debFileName(pkg));
      paths.push(target);
      if (existsSync(target)) continue;
      const mib = (pkg.size / 1048576).toFixed(1);
      progress?.(`downloading ${pkg.name} ${pkg.version} (${mib} MiB)`);
      const scratch = await mkdtemp(path.join(destDir, '.download-'));
      try {
        await this.run('apt-get', ['download', '-q', `${pkg.name}=${pkg.version}`], scratch);
        const files = (await readdir(scratch)).filter((f) => f.endsWith('.deb'));
        if (files.length !== 1) {
          throw new Error(`debian-fetch: apt-get download ${pkg.name} left ${files.length} files`);
        }
        await rename(path.join(scratch, files[0]!), target);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    }
    return paths;
  }
}

/** File name used for a downloaded package. */
export function debFileName(pkg: { name: string; version: string; architecture: string }): string {
  return `${pkg.name}_${pkg.version.replace(/:/g, '%3a')}_${pkg.architecture}.deb`;
}

/**
 * Creates (or reuses) a private apt index in `options.dir` and brings its lists up to date when
 * they are missing or older than `maxAgeMs`. Needs network only for that update.
 */
export async function ensureAptIndex(options: AptIndexOptions): Promise<AptIndex> {
  const dir = options.dir;
  const sources = options.sources ?? [
    {
      uris: [hostMirrorUri()],
      suites: options.suites ?? [hostCodename()],
      components: options.components ?? ['main'],
    },
  ];
  for (const sub of [
    'sources',
    'lists/partial',
    'cache/archives/partial',
    'preferences.d',
    'state',
    'log',
  ]) {
    await mkdir(path.join(dir, sub), { recursive: true });
  }
  const sourcesFile = path.join(dir, 'sources', 'guestfb.sources');
  const text = renderDeb822(sources);
  const previous = existsSync(sourcesFile) ? await readFile(sourcesFile, 'utf8') : '';
  if (previous !== text) await writeFile(sourcesFile, text);
  const stamp = path.join(dir, 'updated');
  const maxAge = options.maxAgeMs ?? 24 * 3600 * 1000;
  const fresh =
    previous === text && existsSync(stamp) && Date.now() - (await stat(stamp)).mtimeMs < maxAge;
  const index = new AptIndex(dir);
  if (!fresh) {
    const names = sources.map((s) => s.suites.join(',')).join(' ');
    options.progress?.(`updating private apt index for ${names}`);
    await index.update();
    await writeFile(stamp, `${new Date().toISOString()}\n`);
  }
  return index;
}

/**
 * Downloads `packages` into `<dir>/debs` and unpacks them together into `<dir>/root-<key>`, the key
 * a hash of their names and versions (so a new version set never overwrites a tree in use).
 * Returns the folder's name relative to `dir`.
 */
export async function downloadAndUnpack(
  index: AptIndex,
  packages: ResolvedPackage[],
  dir: string,
  progress?: (msg: string) => void,
): Promise<string> {
  const debs = await index.download(packages, path.join(dir, 'debs'), progress);
  const key = createHash('sha256')
    .update(packages.map((p) => `${p.name}=${p.version}`).join('\n'))
    .digest('hex')
    .slice(0, 12);
  const rootName = `root-${key}`;
  const root = path.join(dir, rootName);
  const scratch = `${root}.${process.pid}.tmp`;
  await rm(scratch, { recursive: true, force: true });
  try {
    for (const deb of debs) {
      progress?.(`extracting ${path.basename(deb)}`);
      await extractDeb(deb, scratch);
    }
    await rm(root, { recursive: true, force: true });
    await rename(scratch, root);
  } catch (error) {
    await rm(scratch, { recursive: true, force: true });
    throw error;
  }
  return rootName;
}

/** Unpacks a .deb's data into `dest` (like `dpkg-deb -x`; nothing is installed). */
export async function extractDeb(deb: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  try {
    await execFileAsync('dpkg-deb', ['-x', deb, dest]);
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`debian-fetch: dpkg-deb -x ${deb} failed: ${e.stderr || e.message}`);
  }
}

/**
 * A cache entry's manifest: JSON written last and atomically, so a manifest that parses, that
 * `complete` accepts and whose files exist means the cached tree is whole. Undefined otherwise
 * (missing, unreadable, an older format, a tree removed underneath it).
 */
export function readManifest<T>(file: string, complete: (manifest: T) => boolean): T | undefined {
  let manifest: T;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
  try {
    return complete(manifest) ? manifest : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a manifest (or any cache file) so readers see the old one or the new one, never half. */
export function writeFileAtomic(file: string, data: string | Buffer): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, data);
  renameSync(temporary, file);
}

/** Writes `manifest` as the cache entry's manifest file. */
export function writeManifest(file: string, manifest: object): void {
  writeFileAtomic(file, `${JSON.stringify(manifest, null, 2)}\n`);
}

/** Removes the trees `<dir>/<prefix>*` other than `keep` (earlier versions the manifest left). */
export async function removeOtherTrees(dir: string, prefix: string, keep: string): Promise<void> {
  for (const old of readdirSync(dir)) {
    if (old.startsWith(prefix) && old !== keep) {
      await rm(path.join(dir, old), { recursive: true, force: true });
    }
  }
}

/** The cache root: `${XDG_CACHE_HOME:-~/.cache}/guestfb/<sub>`. */
export function cacheDir(sub: string): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'guestfb', sub);
}

export interface CacheLockOptions {
  /** Called once when another live process holds the lock, with its pid (NaN if unknown). */
  onWait?: (owner: number) => void;
  /** A lock older than this is taken over even if its pid is alive (the pid may be reused). */
  staleMs?: number;
}

/**
 * Runs `fn` while holding a lock folder inside `dir`, so parallel test processes that fill the
 * same cache wait for each other instead of racing. A lock left by a dead process is taken over.
 */
export async function withCacheLock<T>(
  dir: string,
  fn: () => Promise<T>,
  options: CacheLockOptions = {},
): Promise<T> {
  await mkdir(dir, { recursive: true });
  const lock = path.join(dir, '.lock');
  let reported = false;
  for (;;) {
    try {
      await mkdir(lock);
      await writeFile(path.join(lock, 'pid'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let owner = NaN;
      try {
        owner = Number(await readFile(path.join(lock, 'pid'), 'utf8'));
      } catch {
        // The owner has not written its pid yet; wait for it.
      }
      const dead = Number.isInteger(owner) && owner > 0 && !processAlive(owner);
      if (dead || (options.staleMs !== undefined && (await lockAgeMs(lock)) > options.staleMs)) {
        await rm(lock, { recursive: true, force: true });
        continue;
      }
      if (!reported) options.onWait?.(owner);
      reported = true;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

async function lockAgeMs(lock: string): Promise<number> {
  try {
    return Date.now() - (await stat(lock)).mtimeMs;
  } catch {
    return 0;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The private index of the host release's backports suite (e.g. bookworm-backports) in `dir`. */
export function ensureBackportsIndex(
  dir: string,
  progress?: (msg: string) => void,
): Promise<AptIndex> {
  return ensureAptIndex({ dir, suites: [`${hostCodename()}-backports`], progress });
}
