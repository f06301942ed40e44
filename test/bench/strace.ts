/** strace -c's summary table, for the frame-cost benchmark and the per-frame count test. */

export interface SyscallCount {
  name: string;
  calls: number;
  perFrame: number;
  errors: number;
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
