import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fd } from '../../native/fd.js';
import { collectReport, formatReport, type DoctorEnvironment } from '../../plugin/doctor.js';
import { DrmFormat, DRM_FORMAT_MOD_LINEAR, FormatSet } from '../../plugin/common/formats.js';

function environment(dir: string, overrides: Partial<DoctorEnvironment> = {}): DoctorEnvironment {
  return {
    udmabufPath: path.join(dir, 'no-udmabuf'),
    udmabufParameters: path.join(dir, 'params'),
    kvmPath: path.join(dir, 'no-kvm'),
    qemuBinary: path.join(dir, 'no-qemu'),
    qemuCache: path.join(dir, 'cache'),
    display: undefined,
    probeCompositor: null,
    libvirtFolders: null,
    domainXml: null,
    ...overrides,
  };
}

test('a host without udmabuf, KVM, QEMU or compositor gets each fix and the shm verdict', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-doctor-'));
  const baseline = fd.openFdCount();
  try {
    const report = await collectReport(environment(dir));
    const byArea = (area: string) => report.findings.filter((f) => f.area === area);
    const udmabuf = byArea('udmabuf')[0];
    assert.equal(udmabuf.status, 'missing');
    assert.match(udmabuf.fix ?? '', /modprobe udmabuf.*CONFIG_UDMABUF/);
    assert.equal(byArea('memfd')[0].status, 'ok', 'sealed memfds work on any Linux');
    assert.equal(byArea('compositor')[0].status, 'warn');
    assert.match(byArea('compositor')[0].fix ?? '', /--display/);
    assert.equal(byArea('kvm')[0].status, 'warn');
    assert.match(byArea('qemu')[0].fix ?? '', /qemu-system-x86/);
    assert.equal(report.path, 'shm');
    assert.match(report.verdict, /wl_shm \(no udmabuf\)/);
    const text = formatReport(report);
    assert.match(text, /\[missing\] udmabuf: .*does not exist/);
    assert.match(text, /^path: frames go through wl_shm/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(fd.openFdCount(), baseline);
});

test('a device without access, module limits, a compositor and a cached QEMU are reported', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'guestfb-doctor-'));
  try {
    mkdirSync(path.join(dir, 'params'));
    writeFileSync(path.join(dir, 'params', 'list_limit'), '1024\n');
    writeFileSync(path.join(dir, 'params', 'size_limit_mb'), '64\n');
    // /dev/null is a character device but not udmabuf: opening works, it is not refused for
    // permissions, so use a regular file to get "not a character device".
    writeFileSync(path.join(dir, 'fake-udmabuf'), '');
    const qemu = path.join(dir, 'cache', 'usr', 'bin', 'qemu-system-x86_64');
    mkdirSync(path.dirname(qemu), { recursive: true });
    writeFileSync(qemu, '#!/bin/sh\necho "QEMU emulator version 10.0.3 (Debian)"\n');
    chmodSync(qemu, 0o755);
    const formats = new FormatSet();
    formats.add(DrmFormat.XRGB8888, DRM_FORMAT_MOD_LINEAR);
    const report = await collectReport(
      environment(dir, {
        udmabufPath: path.join(dir, 'fake-udmabuf'),
        qemuBinary: qemu,
        display: 'wayland-test',
        probeCompositor: async () => ({
          globals: ['wl_compositor', 'wl_shm', 'xdg_wm_base', 'zwp_linux_dmabuf_v1'],
          dmabufVersion: 4,
          dmabufFormats: formats,
          shmFormats: new Set([DrmFormat.XRGB8888]),
          shmFormatNames: ['XR24'],
          warnings: [],
        }),
      }),
    );
    const text = formatReport(report);
    assert.match(text, /not a character device/);
    assert.match(
      text,
      /compositor "wayland-test": zwp_linux_dmabuf_v1 version 4 \(default feedback\)/,
    );
    assert.match(text, /XR24:LINEAR/);
    assert.match(text, /\[ok\] +qemu: .*qemu-system-x86_64 10\.0\.3/);
    assert.match(text, /cached QEMU 10\.0\.3/);
    assert.equal(report.path, 'shm');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
