/**
 * Which libvirt domain started this back-end program. libvirt passes no name: it starts the
 * program with `--fd=N` only. What the program does inherit names the domain:
 *  - stdout/stderr: the domain's log file when libvirt writes logs itself (stdio_handler "file"):
 *    /var/log/libvirt/qemu/NAME.log (system) or ~/.cache/libvirt/qemu/log/NAME.log (session);
 *  - the pid file libvirt holds open and locked for the program's lifetime:
 *    .../ID-NAME-ALIAS-vhost-user-gpu.pid, where ID-NAME is the domain's "short name" (NAME cut
 *    to 20 characters).
 * With virtlogd (the default stdio_handler) stdout is a pipe and only the pid file remains.
 */
import { readdirSync, readlinkSync } from 'node:fs';

/** The longest name kept (window titles); longer ones are cut. */
const MAX_NAME = 200;

/** A domain name made safe for a window title: no control characters, bounded length. */
export function cleanName(name: string): string | null {
  // eslint-disable-next-line no-control-regex
  const cleaned = name.replace(/[\u0000-\u001f\u007f]/g, '').slice(0, MAX_NAME);
  return cleaned.length > 0 ? cleaned : null;
}

/** The domain name from the targets of the process's open fds (readlink of /proc/self/fd/N). */
export function domainNameFromFds(links: ReadonlyMap<number, string>): string | null {
  for (const fdNumber of [2, 1]) {
    const target = links.get(fdNumber);
    const match = target ? /\/libvirt\/qemu\/(?:log\/)?([^/]+)\.log$/.exec(target) : null;
    if (match) return cleanName(match[1]!);
  }
  for (const target of links.values()) {
    const match = /\/\d+-(.+)-[^-/]+-vhost-user-[a-z0-9]+\.pid$/.exec(target);
    if (match) return cleanName(match[1]!);
  }
  return null;
}

/** Targets of this process's open fds. */
export function ownFdLinks(): Map<number, string> {
  const links = new Map<number, string>();
  for (const entry of readdirSync('/proc/self/fd')) {
    try {
      links.set(Number(entry), readlinkSync(`/proc/self/fd/${entry}`));
    } catch {
      // closed while listing (readdir's own fd)
    }
  }
  return links;
}

/** The domain that started this process, or null when it was not libvirt (or it cannot tell). */
export function libvirtDomainName(): string | null {
  return domainNameFromFds(ownFdLinks());
}
