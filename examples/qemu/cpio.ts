// A minimal writer for the Linux initramfs format (cpio "newc"): lets an initramfs include a
// /dev/console device node without root and makes the archive byte-for-byte reproducible. Used
// by the QEMU tier's guest image and the kernel test tier.

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'char'; path: string; major: number; minor: number; mode?: number };

const typeBits = { dir: 0o040000, file: 0o100000, symlink: 0o120000, char: 0o020000 } as const;
const defaultMode = { dir: 0o755, file: 0o644, symlink: 0o777, char: 0o600 } as const;

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function hex8(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`cpio field out of range: ${value}`);
  }
  return value.toString(16).padStart(8, '0');
}

function record(
  ino: number,
  mode: number,
  nlink: number,
  name: string,
  data: Buffer,
  rdev: [number, number],
): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const fields = [
    ino,
    mode,
    0, // uid
    0, // gid
    nlink,
    0, // mtime: fixed so identical inputs give identical archives
    data.length,
    0, // devmajor
    0, // devminor
    rdev[0],
    rdev[1],
    nameBytes.length,
    0, // check
  ];
  const headAndName = Buffer.concat([
    Buffer.from('070701' + fields.map(hex8).join(''), 'ascii'),
    nameBytes,
  ]);
  return [headAndName, pad4(headAndName.length), data, pad4(data.length)];
}

/** Serializes entries (parents before children; a leading slash is dropped) into newc. */
export function buildCpio(entries: CpioEntry[]): Buffer {
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
    const rdev: [number, number] = entry.kind === 'char' ? [entry.major, entry.minor] : [0, 0];
    parts.push(...record(ino++, mode, entry.kind === 'dir' ? 2 : 1, name, data, rdev));
  }
  parts.push(...record(0, 0, 1, 'TRAILER!!!', Buffer.alloc(0), [0, 0]));
  return Buffer.concat(parts);
}
