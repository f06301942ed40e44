/**
 * The vhost-user-gpu display protocol (QEMU docs/interop/vhost-user-gpu.rst), back-end side,
 * over the socket QEMU passes with GPU_SET_SOCKET. The back-end sends requests; QEMU replies to
 * GET_PROTOCOL_FEATURES, GET_DISPLAY_INFO and GET_EDID (and to DMABUF_UPDATE, which we never
 * send).
 *
 * What guestfb needs from it: only the display size QEMU was configured with (xres/yres,
 * GET_DISPLAY_INFO), which becomes the guest's preferred mode. guestfb displays through
 * Wayland, so it sends no pixels to QEMU: no UPDATE (that is the full-frame copy this project
 * removes), no DMABUF_SCANOUT (QEMU would need a GL display and a dma-buf). It does send SCANOUT
 * with the mode on modesets (cheap, keeps QEMU's console size right) and nothing else; QEMU's
 * handler for those never replies, so the back-end never waits on QEMU while the guest waits
 * on us. Until the display info reply arrives the queues are held (the guest's first command is
 * GET_DISPLAY_INFO, which should carry QEMU's size); the handshake is two round trips.
 */
import type { HeadInfo } from '../types.js';
import { DISPLAY_INFO_SIZE, HDR_SIZE, MAX_SCANOUTS, Resp } from './gpu-protocol.js';
import { encodeMessage, FrameReader, type Message } from '../../vhost-user/vhost-user-protocol.js';

export const GpuRequest = {
  GET_PROTOCOL_FEATURES: 1,
  SET_PROTOCOL_FEATURES: 2,
  GET_DISPLAY_INFO: 3,
  CURSOR_POS: 4,
  CURSOR_POS_HIDE: 5,
  CURSOR_UPDATE: 6,
  SCANOUT: 7,
  UPDATE: 8,
  DMABUF_SCANOUT: 9,
  DMABUF_UPDATE: 10,
  GET_EDID: 11,
  DMABUF_SCANOUT2: 12,
} as const;

export const GPU_MSG_FLAG_REPLY = 0x4;

/** A vhost-user-gpu message: same 12-byte header as vhost-user, but no version bits. */
export function encodeGpuMessage(request: number, payload?: Uint8Array): Uint8Array {
  return encodeMessage(request, 0, payload);
}

export function encodeScanout(scanoutId: number, width: number, height: number): Uint8Array {
  const payload = new Uint8Array(12);
  const view = new DataView(payload.buffer);
  view.setUint32(0, scanoutId, true);
  view.setUint32(4, width, true);
  view.setUint32(8, height, true);
  return encodeGpuMessage(GpuRequest.SCANOUT, payload);
}

export function encodeCursorPos(
  scanoutId: number,
  x: number,
  y: number,
  hide: boolean,
): Uint8Array {
  const payload = new Uint8Array(12);
  const view = new DataView(payload.buffer);
  view.setUint32(0, scanoutId, true);
  view.setUint32(4, x, true);
  view.setUint32(8, y, true);
  return encodeGpuMessage(hide ? GpuRequest.CURSOR_POS_HIDE : GpuRequest.CURSOR_POS, payload);
}

/** The modes in a virtio_gpu_resp_display_info (QEMU's GET_DISPLAY_INFO reply payload). */
export function parseDisplayInfo(
  payload: Uint8Array,
  count: number,
): { width: number; height: number; x: number; y: number; enabled: boolean }[] | null {
  if (payload.length < DISPLAY_INFO_SIZE) return null;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  if (view.getUint32(0, true) !== Resp.OK_DISPLAY_INFO) return null;
  const out = [];
  for (let i = 0; i < Math.min(count, MAX_SCANOUTS); i++) {
    const at = HDR_SIZE + 24 * i;
    out.push({
      x: view.getUint32(at, true),
      y: view.getUint32(at + 4, true),
      width: view.getUint32(at + 8, true),
      height: view.getUint32(at + 12, true),
      enabled: view.getUint32(at + 16, true) !== 0,
    });
  }
  return out;
}

export interface DisplayChannelIo {
  send(fd: number, data: Uint8Array): void;
  /** Non-blocking receive: null when nothing is pending, empty data at EOF. */
  recv(fd: number, maxBytes: number): { data: Uint8Array; fds: number[] } | null;
  watchReadable(fd: number, onReadable: (error?: Error) => void): () => void;
  close(fd: number): void;
}

type Phase = 'features' | 'display-info' | 'ready' | 'closed';

/**
 * One GPU_SET_SOCKET connection. Takes the fd. `onReady` runs once the display info is known
 * (or the channel failed: then with null), `onClosed` when QEMU closes its end.
 */
export class QemuDisplayChannel {
  private phase: Phase = 'features';
  private readonly reader: FrameReader;
  private stopWatch: (() => void) | null = null;

  constructor(
    private readonly fd: number,
    private readonly io: DisplayChannelIo,
    private readonly scanouts: number,
    private readonly log: (message: string) => void,
    private readonly onReady: (modes: ReturnType<typeof parseDisplayInfo>) => void,
  ) {
    this.reader = new FrameReader((extra) => io.close(extra), 64 * 1024, false);
  }

  get ready(): boolean {
    return this.phase === 'ready' || this.phase === 'closed';
  }

  start(): void {
    this.stopWatch = this.io.watchReadable(this.fd, (error) => {
      if (error) this.fail(`poll failed: ${error.message}`);
      else this.readable();
    });
    this.send(encodeGpuMessage(GpuRequest.GET_PROTOCOL_FEATURES));
  }

  private send(message: Uint8Array): void {
    if (this.phase === 'closed') return;
    try {
      this.io.send(this.fd, message);
    } catch (error) {
      this.fail(`send failed: ${String(error)}`);
    }
  }

  private readable(): void {
    for (;;) {
      if (this.phase === 'closed') return;
      let chunk;
      try {
        chunk = this.io.recv(this.fd, this.reader.wanted());
      } catch (error) {
        this.fail(`receive failed: ${String(error)}`);
        return;
      }
      if (chunk === null) return;
      if (chunk.data.length === 0) {
        for (const fd of chunk.fds) this.io.close(fd);
        this.fail('QEMU closed the display channel');
        return;
      }
      let messages: Message[];
      try {
        messages = this.reader.push(chunk.data, chunk.fds);
      } catch (error) {
        this.fail(String(error));
        return;
      }
      for (const message of messages) this.handle(message);
    }
  }

  private handle(message: Message): void {
    for (const fd of message.fds) this.io.close(fd);
    if (!(message.flags & GPU_MSG_FLAG_REPLY)) {
      this.log(`display channel: unexpected request ${message.request} from QEMU`);
      return;
    }
    if (message.request === GpuRequest.GET_PROTOCOL_FEATURES && this.phase === 'features') {
      // We use neither QEMU's EDID (ours describes the same mode) nor DMABUF_SCANOUT2.
      const none = new Uint8Array(8);
      this.send(encodeGpuMessage(GpuRequest.SET_PROTOCOL_FEATURES, none));
      this.phase = 'display-info';
      this.send(encodeGpuMessage(GpuRequest.GET_DISPLAY_INFO));
      return;
    }
    if (message.request === GpuRequest.GET_DISPLAY_INFO && this.phase === 'display-info') {
      const modes = parseDisplayInfo(message.payload, this.scanouts);
      if (!modes) this.log('display channel: malformed display info reply');
      this.phase = 'ready';
      this.onReady(modes);
      return;
    }
    this.log(`display channel: unexpected reply ${message.request} in phase ${this.phase}`);
  }

  /** Tells QEMU a head's mode (0x0 disables). Never waits for anything. */
  scanout(headId: number, width: number, height: number): void {
    if (this.phase === 'ready') this.send(encodeScanout(headId, width, height));
  }

  private fail(reason: string): void {
    if (this.phase === 'closed') return;
    const wasReady = this.phase === 'ready';
    this.log(`display channel closed: ${reason}`);
    this.close();
    if (!wasReady) this.onReady(null);
  }

  close(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.stopWatch?.();
    this.stopWatch = null;
    this.reader.dispose();
    this.io.close(this.fd);
  }
}

export type DisplayModes = ReturnType<typeof parseDisplayInfo>;

/** 1..16384 wide and high (what a head can be, as for requested sizes), placed within 2^20. */
export function validMode(mode: { width: number; height: number; x: number; y: number }): boolean {
  const within = (v: number, min: number, max: number) =>
    Number.isInteger(v) && v >= min && v <= max;
  return (
    within(mode.width, 1, 16384) &&
    within(mode.height, 1, 16384) &&
    within(mode.x, 0, 1 << 20) &&
    within(mode.y, 0, 1 << 20)
  );
}

/** Heads from configured defaults, overridden by QEMU's modes where the option did not fix them. */
export function headsFromModes(
  defaults: HeadInfo[],
  modes: DisplayModes,
  fixedSize: boolean,
): HeadInfo[] {
  return defaults.map((head, i) => {
    const mode = modes?.[i];
    // QEMU's numbers are u32s: a mode outside what a head can be keeps the configured one.
    if (!mode || fixedSize || !validMode(mode)) return head;
    return {
      ...head,
      width: mode.width,
      height: mode.height,
      x: mode.x,
      y: mode.y,
      enabled: mode.enabled,
    };
  });
}
