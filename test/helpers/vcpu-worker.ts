/**
 * A hostile guest's vCPU, run in a worker_thread so it mutates guest RAM while the back-end
 * (another process) reads it. It maps the guest's memfd itself and drives one split virtqueue:
 * every chain the back-end hands back is published again at once (the ring never drains), and
 * between publishes it rewrites chosen 32-bit words of guest RAM (request fields, ring entries)
 * with values from a list, so the back-end sees them change under it. It kicks after each batch.
 *
 *   new Worker(vcpuWorkerUrl, { workerData: program })  →  posts a VcpuReport when `stop` is set
 */
import { parentPort, workerData } from 'node:worker_threads';
import { fd } from '../../native/fd.js';
import type { QueueHandOver } from './vhost-frontend.js';

export const vcpuWorkerUrl = new URL('./vcpu-worker.js', import.meta.url);

export interface VcpuProgram {
  queue: QueueHandOver;
  /** Descriptor heads (written by the caller) published at start, then republished when used. */
  heads: number[];
  /** 32-bit little-endian words rewritten between publishes, each with a value from its list. */
  scribble?: { gpa: number; values: number[] }[];
  /** Int32Array over a SharedArrayBuffer: [0] set to 1 stops the vCPU. */
  control: SharedArrayBuffer;
  /** Pause when the back-end returned nothing (ms; default 0.2), so the vCPU does not spin. */
  idleMs?: number;
}

export interface VcpuReport {
  published: number;
  completed: number;
  kicks: number;
  scribbles: number;
}

function run(program: VcpuProgram): VcpuReport {
  const { queue } = program;
  const mapping = fd.mmap(queue.memfd, 0, queue.ramBytes, true);
  const view = new DataView(mapping);
  const control = new Int32Array(program.control);
  const report: VcpuReport = { published: 0, completed: 0, kicks: 0, scribbles: 0 };
  const mask = queue.size - 1;
  let availIdx = queue.availIdx;
  let lastUsed = queue.lastUsed;
  const publish = (head: number): void => {
    view.setUint16(queue.availGpa + 4 + 2 * (availIdx & mask), head, true);
    availIdx = (availIdx + 1) & 0xffff;
    report.published++;
  };
  for (const head of program.heads) publish(head);
  view.setUint16(queue.availGpa + 2, availIdx, true);
  fd.eventfdWrite(queue.kickFd);
  report.kicks++;
  const scribble = program.scribble ?? [];
  const idleMs = program.idleMs ?? 0.2;
  let seed = 0x2545f491;
  const random = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  while (Atomics.load(control, 0) === 0) {
    for (const word of scribble) {
      view.setUint32(word.gpa, word.values[random(word.values.length)]!, true);
      report.scribbles++;
    }
    const usedIdx = view.getUint16(queue.usedGpa + 2, true);
    let harvested = 0;
    while (lastUsed !== usedIdx) {
      const head = view.getUint32(queue.usedGpa + 4 + 8 * (lastUsed & mask), true);
      lastUsed = (lastUsed + 1) & 0xffff;
      publish(head);
      harvested++;
    }
    report.completed += harvested;
    if (harvested > 0) {
      view.setUint16(queue.availGpa + 2, availIdx, true);
      fd.eventfdWrite(queue.kickFd);
      report.kicks++;
    } else {
      Atomics.wait(control, 0, 0, idleMs);
    }
  }
  fd.munmap(mapping);
  return report;
}

if (parentPort && workerData) {
  parentPort.postMessage(run(workerData as VcpuProgram));
}
