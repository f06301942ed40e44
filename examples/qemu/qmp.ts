// A small QMP (QEMU Machine Protocol) client over a UNIX socket: enough for screendump and
// simple queries from tests and the launcher.
import net from 'node:net';
import { readFile } from 'node:fs/promises';

type QmpMessage = {
  QMP?: unknown;
  return?: unknown;
  error?: { class: string; desc: string };
  event?: string;
  id?: number;
};

export class QmpClient {
  private readonly socket: net.Socket;
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  private closedError: Error | undefined;
  /** Events QEMU sent (name and data), oldest first. */
  readonly events: { event: string; data?: unknown }[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => this.failAll(new Error('qmp: connection closed')));
    socket.on('error', (error) => this.failAll(error));
  }

  /**
   * Connects to a QMP server socket and negotiates capabilities. Retries while the socket does
   * not exist yet or refuses (QEMU creates it during startup), up to `attempts` times 100 ms apart.
   */
  static async connect(path: string, attempts = 100): Promise<QmpClient> {
    let lastError: unknown;
    for (let i = 0; i < attempts; i++) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(path);
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
        const client = new QmpClient(socket);
        await client.greeting();
        await client.execute('qmp_capabilities');
        return client;
      } catch (error) {
        lastError = error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new Error(`qmp: cannot connect to ${path}: ${(lastError as Error)?.message}`);
  }

  private greetingWaiter: ((ok: boolean) => void) | undefined;
  private greeted = false;

  private greeting(): Promise<void> {
    if (this.greeted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.greetingWaiter = (ok) => (ok ? resolve() : reject(this.closedError));
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (!line) continue;
      let message: QmpMessage;
      try {
        message = JSON.parse(line) as QmpMessage;
      } catch {
        continue;
      }
      if (message.QMP !== undefined) {
        this.greeted = true;
        this.greetingWaiter?.(true);
      } else if (message.event !== undefined) {
        this.events.push({ event: message.event, data: (message as { data?: unknown }).data });
      } else if (message.id !== undefined) {
        const waiter = this.pending.get(message.id);
        this.pending.delete(message.id);
        if (message.error) {
          waiter?.reject(new Error(`qmp: ${message.error.class}: ${message.error.desc}`));
        } else {
          waiter?.resolve(message.return);
        }
      }
    }
  }

  private failAll(error: Error): void {
    this.closedError ??= error;
    this.greetingWaiter?.(false);
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }

  /** Runs one QMP command and resolves with its `return` value. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.write(`${JSON.stringify({ execute: command, arguments: args, id })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface Image {
  width: number;
  height: number;
  /** RGB, 3 bytes per pixel, rows packed. */
  rgb: Buffer;
}

/** Parses a binary PPM (P6, maxval 255) as QEMU's screendump writes it. */
export function parsePpm(data: Buffer): Image {
  let offset = 0;
  const token = (): string => {
    for (;;) {
      while (offset < data.length && /\s/.test(String.fromCharCode(data[offset]!))) offset++;
      if (data[offset] === 0x23) {
        while (offset < data.length && data[offset] !== 0x0a) offset++;
        continue;
      }
      break;
    }
    const start = offset;
    while (offset < data.length && !/\s/.test(String.fromCharCode(data[offset]!))) offset++;
    return data.subarray(start, offset).toString('ascii');
  };
  if (token() !== 'P6') throw new Error('ppm: not a binary PPM (P6)');
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  offset++; // the single whitespace byte after maxval
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`ppm: bad size ${width}x${height}`);
  }
  if (maxval !== 255) throw new Error(`ppm: maxval ${maxval} is not 255`);
  const size = width * height * 3;
  if (data.length - offset < size) throw new Error('ppm: truncated pixel data');
  return { width, height, rgb: Buffer.from(data.subarray(offset, offset + size)) };
}

/**
 * Grabs what a display head shows (QMP `screendump`, PPM) into `file` and parses it.
 * `device` is the QOM id of the display device; `head` needs `device`.
 */
export async function screendump(
  qmp: QmpClient,
  file: string,
  options: { device?: string; head?: number } = {},
): Promise<Image> {
  const args: Record<string, unknown> = { filename: file, format: 'ppm' };
  if (options.device !== undefined) args.device = options.device;
  if (options.head !== undefined) args.head = options.head;
  await qmp.execute('screendump', args);
  return parsePpm(await readFile(file));
}
