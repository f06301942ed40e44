// A private apt configuration for bookworm-backports: its own source list, index lists, package
// cache, dpkg status and preferences, so fetching kernel packages never reads or changes the
// host's apt state (only the host's apt.conf.d, e.g. a proxy setting, still applies).
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runTool, runToolChecked, tail } from './process.js';

/** One deb822 paragraph: field name (lower case) to value. */
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

/** The Debian mirror the host uses for its release, e.g. { uri, codename: 'bookworm' }. */
export interface HostMirror {
  uri: string;
  codename: string;
}

function hostCodename(): string {
  const osRelease = readFileSync('/etc/os-release', 'utf8');
  const match = /^VERSION_CODENAME=("?)([a-z]+)\1$/m.exec(osRelease);
  if (!match)
    throw new Error('cannot tell the Debian release: /etc/os-release has no VERSION_CODENAME');
  return match[2];
}

/**
 * Finds the host's main Debian mirror: the source that serves `<codename>` with component
 * `main`, from /etc/apt/sources.list.d/*.sources (deb822) or the one-line sources.list.
 */
export function hostDebianMirror(): HostMirror {
  const codename = hostCodename();
  const sourcesDir = '/etc/apt/sources.list.d';
  const candidates: string[] = [];
  const files = existsSync(sourcesDir)
    ? readdirSync(sourcesDir)
        .sort()
        .filter((name) => name.endsWith('.sources'))
    : [];
  for (const name of files) {
    for (const paragraph of parseDeb822(readFileSync(path.join(sourcesDir, name), 'utf8'))) {
      const words = (field: string): string[] => (paragraph.get(field) ?? '').split(/\s+/);
      if (paragraph.get('enabled')?.toLowerCase() === 'no') continue;
      if (!words('types').includes('deb')) continue;
      if (!words('suites').includes(codename) || !words('components').includes('main')) continue;
      candidates.push(...words('uris').filter((uri) => uri !== ''));
    }
  }
  if (candidates.length === 0 && existsSync('/etc/apt/sources.list')) {
    for (const line of readFileSync('/etc/apt/sources.list', 'utf8').split('\n')) {
      const match = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/.exec(line);
      if (match && match[2] === codename && match[3].split(/\s+/).includes('main')) {
        candidates.push(match[1]);
      }
    }
  }
  const uri = candidates.find((candidate) => /^(https?|file):/.test(candidate));
  if (!uri) {
    throw new Error(
      `no apt source for Debian ${codename} main found in ${sourcesDir}/*.sources or ` +
        '/etc/apt/sources.list; the kernel tier fetches from the same mirror as the host',
    );
  }
  return { uri: uri.replace(/\/+$/, ''), codename };
}

/** apt-get and apt-cache bound to a private state folder and a single backports source. */
export class PrivateApt {
  readonly dir: string;
  readonly mirror: HostMirror;
  readonly suite: string;

  constructor(dir: string, mirror: HostMirror) {
    this.dir = dir;
    this.mirror = mirror;
    this.suite = `${mirror.codename}-backports`;
    for (const sub of [
      'sources',
      'lists/partial',
      'cache/archives/partial',
      'preferences.d',
      'state',
      'log',
    ]) {
      mkdirSync(path.join(dir, sub), { recursive: true });
    }
    writeFileSync(
      path.join(dir, 'sources', 'backports.sources'),
      [
        'Types: deb',
        `URIs: ${mirror.uri}`,
        `Suites: ${this.suite}`,
        'Components: main',
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
        '',
      ].join('\n'),
    );
    const status = path.join(dir, 'state', 'status');
    if (!existsSync(status)) writeFileSync(status, '');
  }

  /** The -o options that point every piece of apt state into `dir`. */
  options(): string[] {
    const settings: Record<string, string> = {
      'Dir::Etc::SourceList': '/dev/null',
      'Dir::Etc::SourceParts': path.join(this.dir, 'sources'),
      'Dir::Etc::Preferences': '/dev/null',
      'Dir::Etc::PreferencesParts': path.join(this.dir, 'preferences.d'),
      'Dir::State': path.join(this.dir, 'state'),
      'Dir::State::Lists': path.join(this.dir, 'lists'),
      'Dir::State::status': path.join(this.dir, 'state', 'status'),
      'Dir::Cache': path.join(this.dir, 'cache'),
      'Dir::Log': path.join(this.dir, 'log'),
      'Debug::NoLocking': 'true',
      'APT::Sandbox::User': 'root',
      'APT::Get::List-Cleanup': 'true',
      'Acquire::Languages': 'none',
    };
    return Object.entries(settings).flatMap(([key, value]) => ['-o', `${key}=${value}`]);
  }

  async update(progress: (msg: string) => void): Promise<void> {
    const result = await runTool('apt-get', [...this.options(), '-q', 'update'], {
      onLine: (line) => progress(`apt-get update: ${line}`),
      installHint: 'the kernel tier needs apt (Debian)',
    });
    const failed =
      result.status !== 0 ||
      /^(E:|W: Failed to fetch|Err:)/m.test(`${result.stdout}\n${result.stderr}`);
    if (failed) {
      throw new Error(
        `apt-get update for ${this.suite} from ${this.mirror.uri} failed (status ${result.status}); ` +
          'the kernel tier needs network access to the Debian mirror on its first run:\n' +
          tail(`${result.stdout}\n${result.stderr}`, 20),
      );
    }
  }

  /** The candidate version's fields of `pkg` in backports; throws if apt does not know it. */
  async show(pkg: string): Promise<Deb822Paragraph> {
    const result = await runTool('apt-cache', [
      ...this.options(),
      'show',
      '--no-all-versions',
      pkg,
    ]);
    const paragraph = parseDeb822(result.stdout).find((p) => p.get('package') === pkg);
    if (result.status !== 0 || !paragraph) {
      throw new Error(
        `${this.suite} has no package ${pkg} (apt-cache show exited ${result.status}):\n` +
          tail(result.stderr, 10),
      );
    }
    return paragraph;
  }

  /** Package names from the `Depends` field of `pkg`'s candidate (alternatives flattened). */
  async depends(pkg: string): Promise<string[]> {
    const depends = (await this.show(pkg)).get('depends') ?? '';
    return depends
      .split(/[,|]/)
      .map((item) => item.trim().split(/[\s(:]/)[0])
      .filter((name) => name !== '');
  }

  /** Downloads exact `name=version` packages into `dir`; returns the .deb paths by package name. */
  async download(
    packages: Array<{ name: string; version: string }>,
    dir: string,
    progress: (msg: string) => void,
  ): Promise<Map<string, string>> {
    mkdirSync(dir, { recursive: true });
    await runToolChecked(
      `downloading ${packages.map((p) => p.name).join(', ')}`,
      'apt-get',
      [...this.options(), 'download', ...packages.map((p) => `${p.name}=${p.version}`)],
      { cwd: dir, onLine: (line) => progress(`apt-get download: ${line}`) },
    );
    const files = readdirSync(dir);
    const debs = new Map<string, string>();
    for (const { name, version } of packages) {
      const escapedVersion = version.replace(/:/g, '%3a');
      const file = files.find(
        (f) => f.startsWith(`${name}_${escapedVersion}_`) && f.endsWith('.deb'),
      );
      if (!file)
        throw new Error(
          `apt-get download reported success but ${name}_${version} is not in ${dir}`,
        );
      debs.set(name, path.join(dir, file));
    }
    return debs;
  }
}
