// A minimal writer for the Linux initramfs format (cpio "newc"): lets the guest image include a
// /dev/console device node without root and makes the archive byte-for-byte reproducible.

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function header(fields: number[]): string {
  return '070701' + fields.map((v) => (v >>> 0).toString(16).padStart(8, '0')).join('');
}

function record(
  ino: number,
  mode: number,
  name: string,
  data: Buffer,
  rdev: [number, number],
): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const head = Buffer.from(
    header([
      ino,
      mode,
      0, // uid
      0, // gid
      mode & S_IFDIR ? 2 : 1, // nlink
      0, // mtime: fixed so identical inputs give identical archives
      data.length,
      0, // devmajor
      0, // devminor
      rdev[0],
      rdev[1],
      nameBytes.length,
      0, // check
    ]),
    'ascii',
  );
  const headAndName = Buffer.concat([head, nameBytes]);
  return [headAndName, pad4(headAndName.length), data, pad4(data.length)];
}

/** Serializes entries (parents before children, paths without a leading slash) into newc. */
export function buildCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const entry of entries) {
    const name = entry.path.replace(/^\/+/, '');
    if (entry.kind === 'dir') {
      parts.push(...record(ino++, S_IFDIR | (entry.mode ?? 0o755), name, Buffer.alloc(0), [0, 0]));
    } else if (entry.kind === 'file') {
      parts.push(...record(ino++, S_IFREG | (entry.mode ?? 0o644), name, entry.data, [0, 0]));
    } else {
      const rdev: [number, number] = [entry.major, entry.minor];
      parts.push(...record(ino++, S_IFCHR | (entry.mode ?? 0o600), name, Buffer.alloc(0), rdev));
    }
  }
  parts.push(...record(0, 0, 'TRAILER!!!', Buffer.alloc(0), [0, 0]));
  return Buffer.concat(parts);
}
