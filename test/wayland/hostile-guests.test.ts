// Hostile guests, black box (issue 12): the real guestfb-compositor process serves two guests,
// `good` and `bad`, over vhost-user sockets. Both guests are the test's own front-end
// (test/helpers/vhost-frontend.ts: QEMU's side of the protocol, guest RAM in its own memfd); the
// bad guest's rings are driven by a vCPU in a worker_thread that republishes every chain the
// moment guestfb hands it back and rewrites request fields while guestfb reads them. While each
// attack runs, the good guest flushes a small rectangle every few milliseconds; each test
// asserts that its command round trip stays within 20 ms of its own p99 without the attack (a correctness bound: a guest
// that held the loop used to stall it for seconds), that the process lives and still serves
// Wayland clients (wayland-info), and that the attack was refused with its exact log line.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import {
  Cmd,
  encodeMemEntries,
  encodeRequest,
  HDR_SIZE,
  Resp,
} from '../../plugin/sources/virtio-gpu/gpu-protocol.js';
import { DescFlag } from '../../plugin/vhost-user/virtqueue.js';
import {
  encodeMemTable,
  encodeSingleRegion,
  parseU64,
  Request,
  type WireMemoryRegion,
} from '../../plugin/vhost-user/vhost-user-protocol.js';
import { fd } from '../../native/fd.js';
import { poll, until } from '../helpers/wait.js';
import { FORMAT_B8G8R8X8, PAGE, TestGuest, VhostSocket } from '../helpers/vhost-frontend.js';
import { vcpuWorkerUrl, type VcpuProgram, type VcpuReport } from '../helpers/vcpu-worker.js';
import { waylandInfo } from './native-helpers.js';
import { decodePng } from '../../examples/compositor/render/screenshot.js';
import { pixelsOf } from '../helpers/pixels.js';

type Screenshot = ReturnType<typeof decodePng>;

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = path.resolve(here, '../../../bin/guestfb-compositor.js');
/** How long each attack runs while the good guest measures. */
const ATTACK_MS = 2500;
/** The good guest's flush period. */
const FLUSH_PERIOD_MS = 4;
const P99_BOUND_MS = 20;
/**
 * The good guest alone, just before each attack: its p99 is what the machine's own load adds
 * (a 2-core machine busy with other jobs pushed attack runs past 20 ms that pass when it is
 * idle), so the bound is 20 ms above it. A guest that holds the loop stalls the good one for hundreds of ms or more.
 */
const BASELINE_MS = 1000;
const MiB = 1024 * 1024;

interface Running {
  child: ChildProcess;
  runtime: string;
  socket: string;
  good: TestGuest;
  bad: TestGuest;
  output(): string;
  /** Lines the compositor wrote since the call to mark() (stderr and stdout). */
  since(mark: number): string;
  mark(): number;
  /**
   * Waits (up to 10 s) until every line was written since `mark`, then returns that output. The
   * virtio response reaches the test before the log line that goes with it: they travel on two
   * different pipes.
   */
  logged(mark: number, lines: readonly string[]): Promise<string>;
  /** Writes one line to the compositor's input script (with `inputScript`; else throws). */
  script(line: string): void;
}

/** Starts guestfb-compositor with two vhost-user GPU back-ends and connects both guests. */
async function withCompositor(
  t: TestContext,
  body: (running: Running) => Promise<void>,
  badRamBytes = 64 * MiB,
  /** Drive the seat from stdin (--input-script -), screenshots into the runtime folder. */
  inputScript = false,
): Promise<void> {
  const runtime = mkdtempSync(path.join(os.tmpdir(), 'guestfb-hostile-'));
  const socket = 'hostile-0';
  const goodPath = path.join(runtime, 'good.sock');
  const badPath = path.join(runtime, 'bad.sock');
  const child = spawn(
    process.execPath,
    [
      bin,
      '--headless',
      '--socket',
      socket,
      '--output',
      '640x480@60',
      '--vhost-user-gpu',
      `good=${goodPath}`,
      '--vhost-user-gpu',
      `bad=${badPath}`,
      ...(inputScript ? ['--input-script', '-', '--screenshot-dir', runtime] : []),
    ],
    {
      env: { ...process.env, XDG_RUNTIME_DIR: runtime },
      stdio: [inputScript ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  const good = new TestGuest(goodPath);
  const bad = new TestGuest(badPath, { ramBytes: badRamBytes });
  try {
    await until(() => output.includes('WAYLAND_DISPLAY='), 'the compositor listening', { child });
    await until(() => /guestfb bad: vhost-user GPU back-end on/.test(output), 'guestfb up', {
      child,
    });
    await good.connect();
    await startGoodGuest(good);
    await bad.connect();
    await body({
      child,
      runtime,
      socket,
      good,
      bad,
      output: () => output,
      mark: () => output.length,
      since: (mark) => output.slice(mark),
      logged: async (mark, lines) => {
        const missing = () => lines.filter((line) => !output.slice(mark).includes(line));
        await poll(() => missing().length === 0, { limitMs: 10_000 });
        const logged = output.slice(mark);
        for (const line of missing())
          assert.fail(`log line missing: ${line}\n${logged.slice(0, 4000)}`);
        return logged;
      },
      script: (line) => {
        if (!child.stdin) throw new Error('no input script');
        child.stdin.write(`${line}\n`);
      },
    });
    assert.equal(child.exitCode, null, `the compositor died:\n${output}`);
    const info = await waylandInfo(socket, runtime);
    assert.ok(
      info.globals.some(([name]) => name === 'wl_compositor'),
      'wayland-info lists wl_compositor',
    );
    assert.doesNotMatch(output, /compositor connection failed|wayland connection failed/);
  } catch (error) {
    console.error(`the compositor's last output:\n${output.slice(-4000)}`);
    throw error;
  } finally {
    good.close();
    bad.close();
    child.stdin?.end();
    child.kill('SIGTERM');
    const end = await exited;
    rmSync(runtime, { recursive: true, force: true });
    if (end.signal !== null || end.code !== 0) t.diagnostic(output);
    assert.equal(end.signal, null, `compositor ended by ${end.signal}`);
    assert.equal(end.code, 0, 'the compositor shut down cleanly');
  }
}

const GOOD_RESOURCE = 1;
const GOOD_SIZE = 128;
let goodRequests: { transfer: number; flush: number; response: number } | null = null;

/** The good guest: a scanned-out 128x128 framebuffer, requests at fixed addresses. */
async function startGoodGuest(good: TestGuest): Promise<void> {
  await good.createResource(GOOD_RESOURCE, GOOD_SIZE, GOOD_SIZE);
  await good.expect(encodeRequest(Cmd.SET_SCANOUT, [0, 0, GOOD_SIZE, GOOD_SIZE, 0, GOOD_RESOURCE]));
  const transfer = encodeRequest(Cmd.TRANSFER_TO_HOST_2D, [8, 8, 32, 32, 0, 0, GOOD_RESOURCE, 0]);
  const flush = encodeRequest(Cmd.RESOURCE_FLUSH, [8, 8, 32, 32, GOOD_RESOURCE, 0]);
  const transferGpa = good.alloc.reserve(transfer.length, 64);
  good.ram.set(transfer, transferGpa);
  const flushGpa = good.alloc.reserve(flush.length, 64);
  good.ram.set(flush, flushGpa);
  goodRequests = {
    transfer: transferGpa,
    flush: flushGpa,
    response: good.alloc.reserve(2 * HDR_SIZE, 64),
  };
}

/**
 * The good guest's steady small flushes for `ms`: TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of a
 * 32x32 rectangle (two indirect chains, one kick) every FLUSH_PERIOD_MS; returns each kick →
 * interrupt round trip in ms.
 */
async function measureGoodGuest(good: TestGuest, ms: number): Promise<number[]> {
  const requests = goodRequests!;
  const roundTrips: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    good.alloc.reset();
    good.rings[0].addIndirect([
      { gpa: requests.transfer, length: HDR_SIZE + 32, write: false },
      { gpa: requests.response, length: HDR_SIZE, write: true },
    ]);
    good.rings[0].addIndirect([
      { gpa: requests.flush, length: HDR_SIZE + 24, write: false },
      { gpa: requests.response + HDR_SIZE, length: HDR_SIZE, write: true },
    ]);
    const sent = performance.now();
    await good.kickAndWait(0, 2);
    roundTrips.push(performance.now() - sent);
    await new Promise((resolve) => setTimeout(resolve, FLUSH_PERIOD_MS));
  }
  return roundTrips;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

/** Runs the bad guest's vCPU while the good guest measures; returns both results. */
async function attack(
  t: TestContext,
  running: Running,
  program: Omit<VcpuProgram, 'control'>,
  sample?: () => void,
): Promise<{ latencies: number[]; vcpu: VcpuReport }> {
  const baseline = percentile(await measureGoodGuest(running.good, BASELINE_MS), 99);
  const bound = P99_BOUND_MS + baseline;
  const control = new SharedArrayBuffer(4);
  const worker = new Worker(vcpuWorkerUrl, { workerData: { ...program, control } });
  const report = new Promise<VcpuReport>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  let sampler: NodeJS.Timeout | null = null;
  let latencies: number[];
  try {
    if (sample) sampler = setInterval(sample, 50);
    latencies = await measureGoodGuest(running.good, ATTACK_MS);
  } finally {
    if (sampler) clearInterval(sampler);
    Atomics.store(new Int32Array(control), 0, 1);
    Atomics.notify(new Int32Array(control), 0);
  }
  const vcpu = await report;
  await worker.terminate();
  const p50 = percentile(latencies, 50);
  const p99 = percentile(latencies, 99);
  const max = Math.max(...latencies);
  const line =
    `good guest round trip over ${latencies.length} flushes: p50 ${p50.toFixed(2)} ms, ` +
    `p99 ${p99.toFixed(2)} ms, max ${max.toFixed(2)} ms; bad guest's vCPU: ` +
    `${vcpu.completed} chains completed, ${vcpu.kicks} kicks, ${vcpu.scribbles} scribbles; ` +
    `alone before the attack: p99 ${baseline.toFixed(2)} ms`;
  t.diagnostic(line);
  console.log(`${t.name}: ${line}`);
  assert.ok(latencies.length >= 100, `only ${latencies.length} good flushes`);
  assert.ok(
    p99 < bound,
    `good guest p99 ${p99.toFixed(2)} ms (bound ${P99_BOUND_MS} ms above its ${baseline.toFixed(2)} ms alone)`,
  );
  return { latencies, vcpu };
}

/** Writes one indirect table [request, response] and points descriptors 0..size-1 at it. */
function indirectHeads(
  guest: TestGuest,
  queue: number,
  tables: { request: number; requestLength: number; response: number; responseLength: number }[],
): number[] {
  const ring = guest.rings[queue];
  const heads: number[] = [];
  for (let head = 0; head < ring.size; head++) {
    const entry = tables[head % tables.length]!;
    heads.push(head);
    ring.writeDesc(head, tableFor(guest, entry), 32, DescFlag.INDIRECT, 0);
  }
  return heads;
}

const writtenTables = new WeakMap<object, number>();
function tableFor(
  guest: TestGuest,
  entry: { request: number; requestLength: number; response: number; responseLength: number },
): number {
  let table = writtenTables.get(entry);
  if (table === undefined) {
    table = guest.alloc.reserve(32, 16);
    const ring = guest.rings[0];
    ring.writeDesc(0, entry.request, entry.requestLength, DescFlag.NEXT, 1, table);
    ring.writeDesc(1, entry.response, entry.responseLength, DescFlag.WRITE, 0, table);
    writtenTables.set(entry, table);
  }
  return table;
}

/** A request placed in guest RAM for the vCPU; returns its table entry. */
function placed(guest: TestGuest, request: Uint8Array, responseLength = HDR_SIZE) {
  const at = guest.alloc.reserve(request.length, 64);
  guest.ram.set(request, at);
  return {
    request: at,
    requestLength: request.length,
    response: guest.alloc.reserve(Math.max(responseLength, HDR_SIZE), 64),
    responseLength,
  };
}

function vmRssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

test('#1 ring flood: a vCPU refilling the control ring as fast as guestfb empties it', async (t) => {
  await withCompositor(t, async (running) => {
    const { bad } = running;
    const displayInfo = placed(bad, encodeRequest(Cmd.GET_DISPLAY_INFO, []), 408);
    const heads = indirectHeads(bad, 0, [displayInfo]);
    // The vCPU also shrinks the response buffer under guestfb now and then (a dropped chain).
    const responseLength = writtenTables.get(displayInfo)! + 16 + 8;
    const { vcpu } = await attack(t, running, {
      queue: bad.handOver(0),
      heads,
      scribble: [{ gpa: responseLength, values: [408, 408, 408, 408, 408, 408, 408, 8] }],
    });
    // Many slices' worth (256 chains each) went through: the flood really ran and was served.
    assert.ok(vcpu.completed > 20 * 256, `${vcpu.completed} flood chains completed`);
  });
});

test('#2 backing attack: overlapping, oversized and too many spans; RSS bounded', async (t) => {
  const GiB = 1024 * MiB;
  await withCompositor(
    t,
    async (running) => {
      const { bad } = running;
      const pid = running.child.pid!;
      const ENTRIES = 16384;
      const alternating = encodeMemEntries(
        Array.from({ length: ENTRIES }, (_, i) => ({
          addr: 512 * MiB + (i % 2) * PAGE,
          length: PAGE,
        })),
      );
      // Single pages two pages apart: nothing merges, every entry is its own span.
      const scattered = encodeMemEntries(
        Array.from({ length: ENTRIES }, (_, i) => ({
          addr: 256 * MiB + 2 * PAGE * i,
          length: PAGE,
        })),
      );
      const attach = (id: number, entries: Uint8Array, count = ENTRIES) =>
        encodeRequest(Cmd.RESOURCE_ATTACH_BACKING, [id, count], {}, entries);
      const create = (id: number, w: number, h: number) =>
        encodeRequest(Cmd.RESOURCE_CREATE_2D, [id, FORMAT_B8G8R8X8, w, h]);
      const mark = running.mark();
      const rssBefore = vmRssBytes(pid);
      // The attack: a 1x1 resource with two page addresses alternating 16,384 times.
      await bad.expect(create(100, 1, 1));
      await bad.expect(attach(100, alternating), Resp.ERR_INVALID_PARAMETER);
      await bad.expect(attach(100, scattered), Resp.ERR_INVALID_PARAMETER);
      // Bytes first: eight contiguous 256 MiB backings reach the device's 2 GiB, a ninth not.
      const contiguous = encodeMemEntries([{ addr: 600 * MiB, length: 256 * MiB }]);
      for (let id = 11; id <= 19; id++) await bad.expect(create(id, 8192, 8192));
      for (let id = 11; id <= 18; id++) await bad.expect(attach(id, contiguous, 1));
      await bad.expect(attach(19, contiguous, 1), Resp.ERR_OUT_OF_MEMORY);
      await bad.expect(encodeRequest(Cmd.RESOURCE_DETACH_BACKING, [18, 0]));
      // Spans: 256 MiB resources each given 16,384 single pages (64 MiB, unmergeable); three fit
      // beside the seven spans held, the fourth would pass the device's 65,536.
      for (let id = 1; id <= 4; id++) await bad.expect(create(id, 8192, 8192));
      for (let id = 1; id <= 3; id++) await bad.expect(attach(id, scattered));
      await bad.expect(attach(4, scattered), Resp.ERR_OUT_OF_MEMORY);
      await running.logged(mark, [
        'guestfb bad: RESOURCE_ATTACH_BACKING: ERR_INVALID_PARAMETER: limit: backing entries of resource 100 overlap at guest address 0x20000000',
        `guestfb bad: RESOURCE_ATTACH_BACKING: ERR_INVALID_PARAMETER: limit: resource 100 backing of ${ENTRIES * PAGE} bytes exceeds its size rounded to pages (4096)`,
        `guestfb bad: RESOURCE_ATTACH_BACKING: ERR_OUT_OF_MEMORY: limit maxTotalBackingBytes (${2 * GiB}) reached: resource 19 brings ${256 * MiB} bytes to the ${2 * GiB} held`,
        `guestfb bad: RESOURCE_ATTACH_BACKING: ERR_OUT_OF_MEMORY: limit maxTotalSpans (65536) reached: resource 4 brings ${ENTRIES} spans to the ${7 + 3 * ENTRIES} held`,
      ]);
      // Then the vCPU keeps throwing them: the alternating list at resources whose id it
      // rewrites under guestfb, the scattered one at the 1x1 resource, and at resource 4 with one
      // entry it moves back and forth onto its neighbour (refused for overlap, or for spans).
      const tables = [
        placed(bad, attach(100, alternating)),
        placed(bad, attach(100, scattered)),
        placed(bad, attach(4, scattered)),
      ];
      const idWord = tables[0]!.request + HDR_SIZE;
      const movingEntry = tables[2]!.request + HDR_SIZE + 8 + 16 * 100;
      let peak = vmRssBytes(pid);
      await attack(
        t,
        running,
        {
          queue: bad.handOver(0),
          heads: indirectHeads(bad, 0, tables).slice(0, 48),
          scribble: [
            { gpa: idWord, values: [100, 4, 19, 1, 0xffffffff] },
            { gpa: movingEntry, values: [256 * MiB + 2 * PAGE * 100, 256 * MiB + 2 * PAGE * 101] },
          ],
        },
        () => (peak = Math.max(peak, vmRssBytes(pid))),
      );
      peak = Math.max(peak, vmRssBytes(pid));
      const growth = peak - rssBefore;
      const line = `RSS ${(rssBefore / MiB).toFixed(0)} MiB before, peak ${(peak / MiB).toFixed(0)} MiB: growth ${(growth / MiB).toFixed(1)} MiB`;
      t.diagnostic(line);
      console.log(`${t.name}: ${line}`);
      assert.ok(growth < 256 * MiB, line);
    },
    1024 * MiB,
  );
});

/** Open fds of a process. */
function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Mappings of a process whose file is a memfd named `name`. */
function memfdMappings(pid: number, name: string): number {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((line) => line.includes(`/memfd:${name} `)).length;
}

test('#9 memory regions past the end of their memfd are refused before mapping; no SIGBUS, no fd leak', async (t) => {
  await withCompositor(t, async (running) => {
    const { bad, good } = running;
    const pid = running.child.pid!;
    const SHORT = 'hostile-short-ram';
    const region = (size: number, mmapOffset: number): WireMemoryRegion => ({
      guestAddr: 0n,
      size: BigInt(size),
      userAddr: 0x7f00_0000_0000n,
      mmapOffset: BigInt(mmapOffset),
    });
    const shortMemfd = (bytes: number): number => {
      const x = fd.memfdCreate(SHORT, true);
      fd.ftruncate(x, bytes);
      return x;
    };
    // Each attack: what is sent, the fd it carries, the exact line guestfb must log.
    const attacks: { request: number; payload: Uint8Array; fds: () => number[]; line: string }[] = [
      {
        // 16 MiB claimed of a 1 MiB memfd: mapped anyway, its tail was SIGBUS.
        request: Request.SET_MEM_TABLE,
        payload: encodeMemTable([region(16 * MiB, 0)]),
        fds: () => [shortMemfd(MiB)],
        line: `guestfb bad: vhost-user SET_MEM_TABLE: memory region [0, +${16 * MiB}) of its fd ends past the fd's ${MiB} bytes`,
      },
      {
        // The size fits, the offset puts it wholly past the end.
        request: Request.SET_MEM_TABLE,
        payload: encodeMemTable([region(MiB, 4 * MiB)]),
        fds: () => [shortMemfd(2 * MiB)],
        line: `guestfb bad: vhost-user SET_MEM_TABLE: memory region [${4 * MiB}, +${MiB}) of its fd ends past the fd's ${2 * MiB} bytes`,
      },
      {
        request: Request.ADD_MEM_REG,
        payload: encodeSingleRegion({ ...region(2 * MiB, PAGE), guestAddr: 0x1_0000_0000n }),
        fds: () => [shortMemfd(2 * MiB)],
        line: `guestfb bad: vhost-user ADD_MEM_REG: memory region [${PAGE}, +${2 * MiB}) of its fd ends past the fd's ${2 * MiB} bytes`,
      },
      {
        request: Request.SET_MEM_TABLE,
        payload: encodeMemTable([region(MiB, 0)]),
        fds: () => [fd.eventfd(0)],
        line: 'guestfb bad: vhost-user SET_MEM_TABLE: memory region fd: not a regular file (a memfd or a memory file)',
      },
    ];
    // The suite's bound: 20 ms above the good guest's own p99 alone, just before.
    const baseline = percentile(await measureGoodGuest(good, BASELINE_MS), 99);
    const bound = P99_BOUND_MS + baseline;
    const fdsBefore = fdCount(pid);
    const mark = running.mark();
    let sent = 0;
    let refused = 0;
    const fdsOf: number[][] = [];
    let stop = false;
    // The hostile front-end sends them back to back, each awaited (REPLY_ACK), while the good
    // guest measures.
    const hostile = (async () => {
      while (!stop) {
        const attack = attacks[sent % attacks.length]!;
        // SCM_RIGHTS gives guestfb its own copy of each fd: the test's are made once, kept.
        const fds = (fdsOf[sent % attacks.length] ??= attack.fds());
        const reply = await bad.vhost.call(attack.request, attack.payload, fds);
        sent++;
        if (parseU64(reply) !== 0n) refused++;
        // Back to back, but the test's own loop (the good guest's measure) gets its turn.
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    let latencies: number[];
    try {
      latencies = await measureGoodGuest(good, ATTACK_MS);
    } finally {
      stop = true;
      await hostile;
      for (const x of fdsOf.flat()) fd.close(x);
    }
    const p99 = percentile(latencies, 99);
    // The bad guest's own table is still in place: its rings and RAM still work.
    await bad.expect(encodeRequest(Cmd.GET_DISPLAY_INFO, []), Resp.OK_DISPLAY_INFO);
    const fdsAfter = fdCount(pid);
    const line =
      `${sent} bad memory messages (${refused} refused); good guest p99 ${p99.toFixed(2)} ms over ` +
      `${latencies.length} flushes (alone before: ${baseline.toFixed(2)} ms); compositor fds ` +
      `${fdsBefore} before, ${fdsAfter} after`;
    t.diagnostic(line);
    console.log(`${t.name}: ${line}`);
    assert.equal(refused, sent, 'every bad region answered as failed');
    assert.ok(sent >= attacks.length * 10, `only ${sent} bad messages sent`);
    assert.ok(latencies.length >= 100, `only ${latencies.length} good flushes`);
    assert.ok(
      p99 < bound,
      `good guest p99 ${p99.toFixed(2)} ms (bound ${P99_BOUND_MS} ms above its ${baseline.toFixed(2)} ms alone)`,
    );
    assert.equal(fdsAfter, fdsBefore, 'every fd the hostile front-end sent was closed');
    assert.equal(memfdMappings(pid, SHORT), 0, 'nothing of the short memfds stays mapped');
    await running.logged(
      mark,
      attacks.map((attack) => attack.line),
    );
  });
});

/** The compositor's screenshot of its one output, taken through the input script. */
async function scriptScreenshot(running: Running, name: string): Promise<Screenshot> {
  const file = path.join(running.runtime, `${name}.png`);
  running.script(`screenshot ${name}`);
  await until(() => existsSync(file) && statSync(file).size > 0, `screenshot ${name}`, {
    child: running.child,
  });
  // Written in one go by the compositor; a short read while it writes is retried.
  for (;;) {
    try {
      return decodePng(readFileSync(file));
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

test('#5 cursor flood: the cursor queue refilled without end keeps the Wayland connection, and the cursor image arrives', async (t) => {
  await withCompositor(
    t,
    async (running) => {
      const { bad } = running;
      await bad.createResource(1, 320, 200);
      await bad.expect(encodeRequest(Cmd.SET_SCANOUT, [0, 0, 320, 200, 0, 1]));
      // A 64x64 cursor of one colour (B8G8R8X8 bytes 00 80 ff ff: 0xff8000), hotspot (5, 3).
      const CURSOR_COLOR = 0xff8000;
      const HOT = { x: 5, y: 3 };
      const cursorBase = await bad.createResource(2, 64, 64);
      for (let i = 0; i < 64 * 64; i++) bad.ram.set([0x00, 0x80, 0xff, 0xff], cursorBase + 4 * i);
      // The host pointer rests on the bad guest's window: its cursor is drawn there, at the
      // pointer minus the hotspot, whatever position the guest gives it.
      const title = 'bad — bad';
      const pointer = { x: 300, y: 200 };
      running.script(`wait-window 10000 ${title}`);
      running.script(`place 200 100 ${title}`);
      running.script(`move ${pointer.x} ${pointer.y}`);
      // UPDATE_CURSOR on scanout 0 at (x, y) with resource 2; the vCPU flips it to MOVE_CURSOR
      // and moves it between publishes.
      const update = encodeRequest(Cmd.UPDATE_CURSOR, [0, 10, 10, 0, 2, HOT.x, HOT.y, 0]);
      const at = bad.alloc.reserve(update.length, 64);
      bad.ram.set(update, at);
      const ring = bad.rings[1];
      const heads: number[] = [];
      for (let head = 0; head < ring.size; head++) {
        ring.writeDesc(head, at, update.length, 0, 0);
        heads.push(head);
      }
      const positions = Array.from({ length: 32 }, (_, i) => i * 9);
      const { vcpu } = await attack(t, running, {
        queue: bad.handOver(1),
        heads,
        scribble: [
          { gpa: at, values: [Cmd.UPDATE_CURSOR, Cmd.MOVE_CURSOR] },
          { gpa: at + HDR_SIZE + 4, values: positions },
          { gpa: at + HDR_SIZE + 8, values: positions },
        ],
      });
      // 1,400 updates in one loop turn broke the connection before coalescing.
      assert.ok(vcpu.completed > 20 * 256, `${vcpu.completed} cursor chains completed`);
      // What the compositor shows: the guest's cursor image, whole, once, at the pointer minus
      // the hotspot the guest gave.
      const expected = {
        x: pointer.x - HOT.x,
        y: pointer.y - HOT.y,
        width: 64,
        height: 64,
        count: 64 * 64,
      };
      let seen = pixelsOf(await scriptScreenshot(running, 'cursor-0'), CURSOR_COLOR);
      for (let shot = 1; shot < 50 && JSON.stringify(seen) !== JSON.stringify(expected); shot++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        seen = pixelsOf(await scriptScreenshot(running, `cursor-${shot}`), CURSOR_COLOR);
      }
      t.diagnostic(`cursor in the compositor's output: ${JSON.stringify(seen)}`);
      assert.deepEqual(seen, expected, 'the cursor image at the pointer minus its hotspot');
    },
    64 * MiB,
    true,
  );
});

test('#8 log flood: create/unref churn is held to the per-guest line rate', async (t) => {
  await withCompositor(t, async (running) => {
    const { bad } = running;
    const heads = indirectHeads(bad, 0, [
      placed(bad, encodeRequest(Cmd.RESOURCE_CREATE_2D, [7, FORMAT_B8G8R8X8, 64, 64])),
      placed(bad, encodeRequest(Cmd.RESOURCE_UNREF, [7, 0])),
    ]);
    const mark = running.mark();
    const started = performance.now();
    const { vcpu } = await attack(t, running, { queue: bad.handOver(0), heads });
    const seconds = (performance.now() - started) / 1000;
    const lines = running
      .since(mark)
      .split('\n')
      .filter((line) => line.includes('guestfb bad:'));
    const line = `${vcpu.completed} commands, ${lines.length} log lines of the bad guest in ${seconds.toFixed(1)} s`;
    t.diagnostic(line);
    assert.ok(vcpu.completed > 10_000, line);
    // Burst 100, then 10 a second (plus one line in flight at the ends).
    assert.ok(lines.length <= 100 + Math.ceil(10 * seconds) + 2, line);
    assert.ok(
      lines.some((l) =>
        /guestfb bad: resource 7: 2D 64x64 \w+ \(virtio format 2\) \(\d+ earlier lines of this guest suppressed\)$/.test(
          l,
        ),
      ),
      `no line saying how many were suppressed:\n${lines.slice(-5).join('\n')}`,
    );
  });
});

test('#6 sockets are 0600; a second front-end on a live socket is refused; the first keeps its session', async (t) => {
  await withCompositor(t, async (running) => {
    const socketPath = path.join(running.runtime, 'bad.sock');
    assert.equal(statSync(socketPath).mode & 0o777, 0o600, 'the vhost-user socket mode');
    const mark = running.mark();
    const intruder = await VhostSocket.connect(socketPath);
    try {
      await intruder.closedByPeer();
    } finally {
      intruder.close();
    }
    const line =
      `guestfb bad: refused a second front-end (pid ${process.pid}, uid ${process.getuid!()}) ` +
      `on ${socketPath}: guest bad has a live session (1 refused so far)`;
    await until(() => running.since(mark).includes(line), `the log line: ${line}`);
    // The first front-end is still served.
    await running.bad.expect(encodeRequest(Cmd.GET_DISPLAY_INFO, []), Resp.OK_DISPLAY_INFO);
  });
});
