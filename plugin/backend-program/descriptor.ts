/**
 * libvirt finds vhost-user back-end programs through JSON descriptors (QEMU's
 * docs/interop/vhost-user.json, `VhostUserBackend`): {"description", "type", "binary"}. It reads
 * every file of these folders, a file name in a later folder replacing the same name in an
 * earlier one, and tries them sorted by file name; the first of the wanted type whose
 * `binary --print-capabilities` succeeds (and offers the features the domain asks for) is used:
 *   /usr/share/qemu/vhost-user, /etc/qemu/vhost-user  (every daemon)
 *   $XDG_CONFIG_HOME/qemu/vhost-user (~/.config/...)  (session daemons only, qemu:///session)
 * guestfb's descriptor is named 40-... so it sorts before QEMU's own 50-qemu-gpu.json.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { XMLParser } from 'fast-xml-parser';

const execFileAsync = promisify(execFile);

export const GPU_DESCRIPTOR_NAME = '40-guestfb-gpu.json';

export interface VhostUserDescriptor {
  description: string;
  type: string;
  binary: string;
}

export function gpuDescriptor(binary: string): VhostUserDescriptor {
  return {
    description: "guestfb: the guest's display in your Wayland compositor, zero-copy",
    type: 'gpu',
    binary,
  };
}

/** The GPU back-end program of this installation (bin/guestfb-vhost-user-gpu.js). */
export function gpuProgramPath(): string {
  return fs.realpathSync(new URL('../../../bin/guestfb-vhost-user-gpu.js', import.meta.url));
}

export type InstallScope = 'user' | 'system';

/** The folder `guestfb install-libvirt` writes to. */
export function installFolder(scope: InstallScope, env: NodeJS.ProcessEnv = process.env): string {
  if (scope === 'system') return '/etc/qemu/vhost-user';
  const config = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(config, 'qemu', 'vhost-user');
}

/** The folders a libvirt daemon searches, in its order (privileged: the system daemon). */
export function libvirtSearchFolders(
  privileged: boolean,
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  const folders = ['/usr/share/qemu/vhost-user', '/etc/qemu/vhost-user'];
  if (!privileged) folders.push(installFolder('user', env));
  return folders;
}

/** Writes the descriptor into `folder` (created if missing); returns the file written. */
export function installDescriptor(folder: string, descriptor: VhostUserDescriptor): string {
  fs.mkdirSync(folder, { recursive: true, mode: 0o755 });
  const file = path.join(folder, GPU_DESCRIPTOR_NAME);
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, `${JSON.stringify(descriptor, null, 2)}\n`, { mode: 0o644 });
  fs.renameSync(temporary, file);
  return file;
}

export interface FoundDescriptor {
  file: string;
  descriptor: Partial<VhostUserDescriptor> | null;
  error?: string;
}

/** The descriptors libvirt would consider, in the order it tries them (by file name). */
export function listDescriptors(folders: readonly string[]): FoundDescriptor[] {
  const byName = new Map<string, string>();
  for (const folder of folders) {
    let names: string[];
    try {
      names = fs.readdirSync(folder);
    } catch {
      continue;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const file = path.join(folder, name);
      try {
        if (fs.statSync(file).isFile()) byName.set(name, file);
      } catch {
        // dangling link: libvirt fails on it; so do we, below
        byName.set(name, file);
      }
    }
  }
  return [...byName.keys()].sort().map((name) => {
    const file = byName.get(name)!;
    try {
      const descriptor = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<VhostUserDescriptor>;
      return { file, descriptor };
    } catch (error) {
      return { file, descriptor: null, error: (error as Error).message };
    }
  });
}

export interface GpuChoice {
  /** The descriptor libvirt uses for a plain 2D vhostuser video, or null. */
  chosen: FoundDescriptor | null;
  /** Why earlier gpu descriptors were passed over. */
  skipped: string[];
}

/**
 * Which GPU back-end libvirt picks from `folders` for a domain without 3D acceleration: the
 * first gpu descriptor whose binary answers --print-capabilities with JSON.
 */
export async function chooseGpuBackend(folders: readonly string[]): Promise<GpuChoice> {
  const skipped: string[] = [];
  for (const found of listDescriptors(folders)) {
    if (!found.descriptor) {
      skipped.push(`${found.file}: ${found.error}`);
      continue;
    }
    if (found.descriptor.type !== 'gpu' || typeof found.descriptor.binary !== 'string') continue;
    try {
      const { stdout } = await execFileAsync(found.descriptor.binary, ['--print-capabilities'], {
        timeout: 10_000,
      });
      const capabilities = JSON.parse(stdout) as { type?: unknown; features?: unknown };
      if (!Array.isArray(capabilities.features)) throw new Error('no "features" array');
      return { chosen: found, skipped };
    } catch (error) {
      skipped.push(
        `${found.file}: ${found.descriptor.binary} --print-capabilities: ${(error as Error).message.split('\n')[0]}`,
      );
    }
  }
  return { chosen: null, skipped };
}

export interface DomainXmlProblem {
  summary: string;
  /** What to put in the XML (virsh edit). */
  fix: string;
}

export interface DomainXmlCheck {
  /** Problems, each with its fix. Empty: the domain is ready for guestfb. */
  problems: DomainXmlProblem[];
  name: string | null;
}

const MEMORY_BACKING =
  "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>";
const VIDEO = "<video><driver name='vhostuser'/><model type='virtio'/></video>";

/** Checks a domain XML (virsh dumpxml) for what guestfb needs. */
export function checkDomainXml(xml: string): DomainXmlCheck {
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '',
    isArray: (_name: string, _path: unknown, _leaf: boolean, attribute: boolean) => !attribute,
  });
  let document: Record<string, unknown[]>;
  try {
    document = parser.parse(xml) as Record<string, unknown[]>;
  } catch (error) {
    const summary = `not XML: ${(error as Error).message}`;
    return { problems: [{ summary, fix: 'pass the output of virsh dumpxml NAME' }], name: null };
  }
  type Node = Record<string, unknown[] | string | undefined>;
  const first = (node: Node | undefined, key: string): Node | undefined =>
    (node?.[key] as Node[] | undefined)?.[0];
  const all = (node: Node | undefined, key: string): Node[] =>
    (node?.[key] as Node[] | undefined) ?? [];
  const domain = (document.domain as Node[] | undefined)?.[0];
  if (!domain) {
    return {
      problems: [{ summary: 'no <domain> element', fix: 'pass the output of virsh dumpxml NAME' }],
      name: null,
    };
  }
  const nameNode = first(domain, 'name') as unknown;
  const name =
    typeof nameNode === 'string'
      ? nameNode
      : (((nameNode as Node | undefined)?.['#text'] as string | undefined) ?? null);
  const problems: DomainXmlProblem[] = [];
  const backing = first(domain, 'memoryBacking');
  const source = first(backing, 'source');
  const access = first(backing, 'access');
  if (source?.type !== 'memfd' || access?.mode !== 'shared') {
    const have = backing
      ? `source type '${String(source?.type ?? 'none')}', access mode '${String(access?.mode ?? 'private')}'`
      : 'no <memoryBacking>';
    problems.push({
      summary: `guest RAM must be shared memfd so the back-end can map it (${have})`,
      fix: `add ${MEMORY_BACKING}`,
    });
  }
  const videos = all(first(domain, 'devices'), 'video');
  const vhostuser = videos.some(
    (video) =>
      first(video, 'driver')?.name === 'vhostuser' && first(video, 'model')?.type === 'virtio',
  );
  if (!vhostuser) {
    problems.push({ summary: 'no vhost-user virtio video device', fix: `use ${VIDEO}` });
  } else if (
    videos.some((video) => first(first(video, 'model'), 'acceleration')?.accel3d === 'yes')
  ) {
    problems.push({
      summary: "3D acceleration (accel3d='yes') asks for virgl, which guestfb does not offer",
      fix: "remove <acceleration accel3d='yes'/> from the video model",
    });
  }
  return { problems, name };
}
