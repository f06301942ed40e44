// `npm run bench [-- --json] [-- --json-out FILE] [-- --rounds N] [-- --frames N] [-- --quick]`: every benchmark in
// one run.
//   handoff       the plugin's handoff cost, zero-copy vs copy (gets --json, --rounds)
//   vhost-vs-qemu guestfb's back-end against QEMU's vhost-user-gpu under a real guest (gets every
//                 argument but --quick)
//   frame-cost    guestfb's whole cost per guest frame driven by a synthetic QEMU + guest: CPU per
//                 frame, syscalls, allocations, heap and fds over a long run, 8 guests (gets
//                 --json, --quick)
//   input         guestfb's input round trip under a real two-head guest: 200 key events, one at
//                 a time, script line -> guest evdev read -> the guest's line back (the input
//                 e2e, test/e2e/evdev.test.ts, whose report this parses)
//   nested        guestfb's CPU per frame on the udmabuf path with a real guest: QEMU 10 inside the
//                 kernel-tier VM (the only place here with /dev/udmabuf), guestfb standalone into
//                 weston 14; TCG inside TCG, so slow in absolute terms (gets --nested-frames N,
//                 --nested-size WxH; --no-nested leaves it out)
// With --json the results are printed as one object: {"handoff", "vhostVsQemu", "frameCost",
// "zeroCopy", "inputLatency", "nested"} ("nested" is null with --no-nested). `zeroCopy` is, per
// resolution, guestfb's back-end alone plus the plugin's
// zero-copy handoff (both measured in this run) against QEMU's back-end: on a host without
// /dev/udmabuf the plugin under a real guest takes its copying fallback, so that sum is the
// zero-copy path's cost.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const json = args.includes('--json');
const handoffArgs = [];
const vhostArgs = [];
const frameArgs = [];
const nestedArgs = [];
let nestedRun = true;
/** --json-out FILE: the JSON object also goes to FILE (the tables still print). */
let jsonOut = null;
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === '--json-out') {
    jsonOut = args[++i];
  } else if (arg === '--json') {
    // (the children always print JSON; this script prints the tables)
  } else if (arg === '--no-nested') {
    nestedRun = false;
  } else if (arg === '--nested-frames' || arg === '--nested-size') {
    nestedArgs.push(arg.replace('--nested-', '--'), args[++i]);
  } else if (arg === '--quick') {
    frameArgs.push(arg);
  } else if (arg === '--rounds' || arg === '--frames') {
    if (arg === '--rounds') handoffArgs.push(arg, args[i + 1]);
    vhostArgs.push(arg, args[++i]);
  } else if (arg.startsWith('--rounds=')) {
    handoffArgs.push(arg);
    vhostArgs.push(arg);
  } else {
    vhostArgs.push(arg);
  }
}

function run(file, fileArgs) {
  if (!json) process.stderr.write(`bench: ${file}\n`);
  const result = spawnSync(
    process.execPath,
    // As the guestfb commands run node (their #! line): the handoff bench's plugin runs in it.
    ['--no-memory-reducer', path.join(root, 'dist/test/bench', file), '--json', ...fileArgs],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    },
  );
  if (result.status !== 0) {
    process.stderr.write(`bench: ${file} failed (status ${result.status ?? result.signal})\n`);
    process.exit(result.status || 1);
  }
  return JSON.parse(result.stdout);
}

const handoff = run('handoff.js', handoffArgs);
const frameCost = run('frame-cost.js', frameArgs);
const vhostVsQemu = run('vhost-vs-qemu.js', vhostArgs);
const inputLatency = runInputLatency();
const nested = nestedRun ? run('nested.js', nestedArgs) : null;
{
  const zeroCopy = vhostVsQemu.resolutions.map((r) => {
    const handoffUs = handoff.resolutions[r.resolution]?.zeroCopy.usPerFrame ?? null;
    const backendUs = r.guestfbBackendMsPerFrame * 1000;
    const totalUs = handoffUs === null ? null : backendUs + handoffUs;
    return {
      resolution: r.resolution,
      qemuUsPerFrame: r.qemuMsPerFrame * 1000,
      backendUsPerFrame: backendUs,
      handoffUsPerFrame: handoffUs,
      /** back-end alone + zero-copy handoff */
      totalUsPerFrame: totalUs,
      /** QEMU's back-end CPU / guestfb's zero-copy total */
      ratio: totalUs === null ? null : (r.qemuMsPerFrame * 1000) / totalUs,
    };
  });
  const all = { handoff, vhostVsQemu, frameCost, zeroCopy, inputLatency, nested };
  if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(all)}\n`);
  if (json) {
    process.stdout.write(`${JSON.stringify(all)}\n`);
  } else {
    printTables(zeroCopy);
  }
}

/** Runs the input e2e and takes its round-trip report (it asserts the events it times). */
function runInputLatency() {
  const file = 'dist/test/e2e/evdev.test.js';
  if (!json) process.stderr.write(`bench: ${file}\n`);
  const result = spawnSync(process.execPath, ['--test', '--test-reporter=tap', file], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const report =
    /round trip \((.*?)\), (\d+) key events: p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms/.exec(
      result.stdout,
    );
  if (result.status !== 0 || !report) {
    process.stderr.write(`${result.stdout}\nbench: ${file} failed (status ${result.status})\n`);
    process.exit(result.status || 1);
  }
  return {
    what: report[1],
    events: Number(report[2]),
    p50Ms: Number(report[3]),
    p99Ms: Number(report[4]),
    maxMs: Number(report[5]),
  };
}

function printTables(zeroCopy) {
  const out = (line = '') => process.stdout.write(`${line}\n`);
  const us = (v) => (v === null || v === undefined ? 'n/a' : `${v.toFixed(0)} µs`);
  out(`QEMU: ${vhostVsQemu.note}`);
  out(`handoff: ${handoff.note}`);
  out();
  out(
    '| resolution | QEMU vhost-user-gpu | guestfb back-end | guestfb back-end + plugin (real guest) | zero-copy handoff | zero-copy total | QEMU / total |',
  );
  out('| --- | --- | --- | --- | --- | --- | --- |');
  for (const z of zeroCopy) {
    const r = vhostVsQemu.resolutions.find((x) => x.resolution === z.resolution);
    out(
      `| ${z.resolution} | ${us(z.qemuUsPerFrame)} | ${us(z.backendUsPerFrame)} | ` +
        `${us(r.guestfbPluginMsPerFrame * 1000)} (${Math.round(r.bytesCopiedPerFrame.guestfbPlugin)} B copied) | ` +
        `${us(z.handoffUsPerFrame)} | ${us(z.totalUsPerFrame)} | ${z.ratio === null ? 'n/a' : `${z.ratio.toFixed(1)}×`} |`,
    );
  }
  out();
  out('| handoff (plugin only) | zero-copy CPU | zero-copy wall p50 / p99 | copying CPU |');
  out('| --- | --- | --- | --- |');
  for (const [name, r] of Object.entries(handoff.resolutions)) {
    out(
      `| ${name} | ${us(r.zeroCopy.usPerFrame)} | ${us(r.zeroCopy.wallP50Us)} / ${us(r.zeroCopy.wallP99Us)} | ${us(r.copy.usPerFrame)} |`,
    );
  }
  out();
  out(`frame-cost: ${frameCost.note}`);
  out();
  out(
    '| synthetic guest, 30 Hz | guestfb back-end | guestfb back-end + plugin | wake-ups per frame (back-end / + plugin) | flush → commit p50 / p99 |',
  );
  out('| --- | --- | --- | --- | --- |');
  const count = (v) => (v === undefined ? 'n/a' : v.toFixed(2));
  for (const [name, r] of Object.entries(frameCost.resolutions)) {
    out(
      `| ${name} | ${us(r.backend.cpuUsPerFrame)} | ${us(r.plugin.cpuUsPerFrame)} | ` +
        `${count(r.backend.wakeUpsPerFrame)} / ${count(r.plugin.wakeUpsPerFrame)} | ` +
        `${us(r.plugin.handoffP50Us)} / ${us(r.plugin.handoffP99Us)} |`,
    );
  }
  out();
  if (Array.isArray(frameCost.syscallsPerFrame)) {
    const total = frameCost.syscallsPerFrame.reduce((sum, s) => sum + s.perFrame, 0);
    out(
      `syscalls per guest frame (1920x1080, back-end + plugin): ${total.toFixed(1)} — ` +
        frameCost.syscallsPerFrame.map((s) => `${s.name} ${s.perFrame.toFixed(2)}`).join(', '),
    );
    for (const s of frameCost.syscallsPerFrame) {
      if (s.why) out(`  - ${s.name} ${s.perFrame.toFixed(2)}: ${s.why}`);
    }
  } else {
    out(`syscalls per guest frame: ${frameCost.syscallsPerFrame}`);
  }
  for (const [mode, a] of Object.entries(frameCost.allocationsPerFrame)) {
    out(
      `allocated per guest frame (${mode}): ${a.bytesPerFrame.toFixed(0)} bytes (${a.gcs} GCs in the window)`,
    );
  }
  const e = frameCost.eightGuests;
  out(
    `8 guests at 1920x1080@30, one process: ${us(e.cpuUsPerFrame)} per frame (one guest ${us(e.oneGuestCpuUsPerFrame)}, ` +
      `ratio ${e.ratio.toFixed(2)}); worst guest's flush → commit p99 ${us(e.worstHandoffP99Us)}`,
  );
  const floor = frameCost.wakeFloor;
  if (floor) {
    const figure = (f) => `${us(f.pacedUs)} (${us(f.backToBackUs)} back to back)`;
    out(
      `wake-up floor at ${floor.fps} Hz (a process that only drains the kick and signals back, CPU per wake-up): ` +
        `C ${floor.c ? figure(floor.c) : `n/a (${floor.cWhy})`}, Node ${figure(floor.node)}`,
    );
    for (const [name, r] of Object.entries(frameCost.resolutions)) {
      out(
        `  guestfb above the Node floor at ${name}: back-end ${us(r.backend.cpuUsPerFrame - floor.node.pacedUs)}, ` +
          `back-end + plugin ${us(r.plugin.cpuUsPerFrame - floor.node.pacedUs)}`,
      );
    }
  }
  if (nested) {
    out();
    out(`nested: ${nested.note}`);
    out();
    out(
      '| real guest, udmabuf path (TCG in TCG) | guestfb CPU per guest frame | per presented frame | bytes copied | QEMU start → DRM device |',
    );
    out('| --- | --- | --- | --- | --- |');
    out(
      `| ${nested.resolution} (${nested.path}) | ${us(nested.cpuUsPerFlush)} (${nested.flushes} frames) | ` +
        `${us(nested.cpuUsPerPresented)} (${nested.framesPresented}) | ${nested.bytesCopied} | ` +
        `${nested.boot.qemuToDrmS.toFixed(1)} s |`,
    );
  }
  const l = frameCost.longRun;
  out(
    `long run, ${l.frames} frames: heap used ${(l.heapUsedBefore / 1e6).toFixed(2)} → ${(l.heapUsedAfter / 1e6).toFixed(2)} MB, ` +
      `open fds ${l.fdsBefore} → ${l.fdsAfter}`,
  );
  const i = inputLatency;
  out();
  out(
    `input round trip (${i.what}), ${i.events} key events: p50 ${i.p50Ms} ms, p99 ${i.p99Ms} ms, ` +
      `max ${i.maxMs} ms`,
  );
}
