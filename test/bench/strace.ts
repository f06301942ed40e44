/** strace -c's summary table, for the frame-cost benchmark and the per-frame count test. */

export interface SyscallCount {
  name: string;
  calls: number;
  perFrame: number;
  errors: number;
  /** What the syscall does for a frame (SYSCALL_PURPOSE), added by the frame-cost bench. */
  why?: string;
}

/** Parses strace -c's table ("% time seconds usecs/call calls [errors] syscall"), by calls. */
export function parseStraceSummary(text: string, frames: number): SyscallCount[] {
  const counts: SyscallCount[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 5 || !/^\d/.test(fields[0]!) || fields.at(-1) === 'total') continue;
    const name = fields.at(-1)!;
    const calls = Number(fields[3]);
    const errors = fields.length >= 6 ? Number(fields[4]) : 0;
    if (!Number.isFinite(calls)) continue;
    counts.push({ name, calls, errors, perFrame: calls / frames });
  }
  return counts.sort((a, b) => b.calls - a.calls);
}

/** Why each syscall of a guest frame on the zero-copy path is there (the bench prints it). */
export const SYSCALL_PURPOSE: Record<string, string> = {
  read: "drains the guest's kick eventfd (the guest added TRANSFER_TO_HOST_2D + RESOURCE_FLUSH)",
  write: "signals the used-buffer interrupt eventfd (the guest's fence: its commands are done)",
  sendmsg:
    'flushes the Wayland requests of the commit (attach, damage_buffer, commit; frame when paced) in one write, once per loop turn',
  recvmsg:
    "reads the compositor's events: a buffer release when the compositor sends one, a frame callback's done (+ delete_id) when the guest is faster than the display",
  epoll_pwait:
    "libuv's wait: per wake-up one non-blocking poll (its idle-time metric) and one blocking wait; one wake-up for the kick (a frame callback's done or a separate release would add one)",
  futex: "V8's helper threads (GC, compiler), not guestfb's frame path",
  brk: "malloc growing the C heap (libwayland's closures), not per frame in steady state",
  mprotect: 'V8 making code pages writable for the JIT, not per frame in steady state',
  mmap: "V8's heap pages, not per frame in steady state",
  munmap: "V8's heap pages, not per frame in steady state",
  madvise: 'V8 returning heap pages, not per frame in steady state',
};
