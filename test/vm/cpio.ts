// Writes "newc" cpio archives, the format the kernel unpacks as an initramfs. Writing it here
// (rather than with cpio(1) over a staging folder) lets the archive hold device nodes such as
// /dev/console without needing root on the host.

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'chardev'; path: string; major: number; minor: number; mode?: number };

const typeBits = { dir: 0o040000, file: 0o100000, symlink: 0o120000, chardev: 0o020000 } as const;
const defaultMode = { dir: 0o755, file: 0o644, symlink: 0o777, chardev: 0o600 } as const;

function hex8(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`cpio field out of range: ${value}`);
  }
  return value.toString(16).padStart(8, '0');
}

function padTo4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function record(
  name: string,
  ino: number,
  mode: number,
  data: Buffer,
  rdev: { major: number; minor: number },
): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const header = Buffer.from(
    '070701' +
      hex8(ino) +
      hex8(mode) +
      hex8(0) + // uid
      hex8(0) + // gid
      hex8(1) + // nlink
      hex8(0) + // mtime: fixed so equal inputs give equal archives
      hex8(data.length) +
      hex8(0) + // devmajor
      hex8(0) + // devminor
      hex8(rdev.major) +
      hex8(rdev.minor) +
      hex8(nameBytes.length) +
      hex8(0), // check
    'ascii',
  );
  return [header, nameBytes, padTo4(header.length + nameBytes.length), data, padTo4(data.length)];
}

/** Serializes `entries` (paths relative to the archive root, parents listed first). */
export function cpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const entry of entries) {
    const name = entry.path.replace(/^\/+/, '');
    if (name === '' || name.split('/').includes('..')) {
      throw new Error(`bad cpio path: ${JSON.stringify(entry.path)}`);
    }
    const permissions = entry.kind === 'symlink' ? 0o777 : (entry.mode ?? defaultMode[entry.kind]);
    const mode = typeBits[entry.kind] | (permissions & 0o7777);
    const data =
      entry.kind === 'file'
        ? entry.data
        : entry.kind === 'symlink'
          ? Buffer.from(entry.target, 'utf8')
          : Buffer.alloc(0);
    const rdev =
      entry.kind === 'chardev'
        ? { major: entry.major, minor: entry.minor }
        : { major: 0, minor: 0 };
    parts.push(...record(name, ino++, mode, data, rdev));
  }
  parts.push(...record('TRAILER!!!', 0, 0, Buffer.alloc(0), { major: 0, minor: 0 }));
  return Buffer.concat(parts);
}
