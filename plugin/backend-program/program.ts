/**
 * What a back-end program does with its channel, for every device type: get a connected
 * vhost-user socket (--fd or --socket-path), hand it to the user's running guestfb if there is
 * one (handoff.ts), else serve it in this process. Ends on SIGTERM (the conventions) or when the
 * domain's session is over.
 */
import fs from 'node:fs';
import { fd as fdModule, waitReadable, type FdAddon } from '../../native/fd.js';
import type { BackendChannel } from './conventions.js';
import { controlSocketCandidates, handOff } from './handoff.js';
import { libvirtDomainName } from './libvirt-domain.js';

export type ProgramLog = (message: string) => void;

/** Resolves on the first SIGTERM or SIGINT (and stops listening for them). */
export function terminationSignal(): { promise: Promise<string>; dispose(): void } {
  let handler: (signal: NodeJS.Signals) => void = () => undefined;
  const promise = new Promise<string>((resolve) => {
    handler = (signal) => resolve(signal);
    process.once('SIGTERM', handler);
    process.once('SIGINT', handler);
  });
  return {
    promise,
    dispose: () => {
      process.off('SIGTERM', handler);
      process.off('SIGINT', handler);
    },
  };
}

/**
 * The connected vhost-user socket of a channel (owned by the caller). --fd: checked to be an
 * AF_UNIX stream socket, then made non-blocking and close-on-exec. --socket-path: listens and
 * takes the first connection (the path is removed again).
 */
export async function connectChannel(
  channel: BackendChannel,
  fd: FdAddon = fdModule,
  acceptTimeoutMs = 24 * 3600 * 1000,
): Promise<number> {
  if (channel.kind === 'fd') {
    let kind;
    try {
      kind = fd.socketKind(channel.fd);
    } catch (error) {
      throw new Error(`--fd=${channel.fd}: ${(error as Error).message}`);
    }
    if (!kind.unix || !kind.stream) {
      throw new Error(`--fd=${channel.fd}: not an AF_UNIX stream socket`);
    }
    fd.adoptFd(channel.fd);
    return channel.fd;
  }
  try {
    if (fs.lstatSync(channel.path).isSocket()) fs.unlinkSync(channel.path);
  } catch {
    // nothing there
  }
  const listener = fd.unixListen(channel.path, 1);
  try {
    for (;;) {
      await waitReadable(listener, acceptTimeoutMs);
      const conn = fd.unixAccept(listener);
      if (conn >= 0) return conn;
    }
  } finally {
    fd.close(listener);
    try {
      fs.unlinkSync(channel.path);
    } catch {
      // already gone
    }
  }
}

/** The name windows get: $GUESTFB_NAME, else the libvirt domain's, else the fallback. */
export function domainName(fallback: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.GUESTFB_NAME || libvirtDomainName() || fallback;
}

export interface ServeOptions {
  /** vhost-user device type. */
  type: string;
  /** The connected vhost-user socket (taken). */
  conn: number;
  name: string;
  log: ProgramLog;
  /** Serves the socket in this process; resolves with the exit status when the session ends
   * or `stop` fires. */
  serveLocally: (conn: number, name: string, stop: Promise<string>) => Promise<number>;
  env?: NodeJS.ProcessEnv;
  fdModule?: FdAddon;
}

/** Hands the domain to a running guestfb, or serves it here. Resolves with the exit status. */
export async function handOffOrServe(options: ServeOptions): Promise<number> {
  const fd = options.fdModule ?? fdModule;
  const termination = terminationSignal();
  try {
    for (const candidate of controlSocketCandidates(options.env)) {
      let result;
      try {
        result = await handOff(
          candidate,
          { type: options.type, name: options.name },
          options.conn,
          {
            fdModule: fd,
          },
        );
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // No guestfb there is the ordinary case: say so briefly.
        const why =
          code === 'ENOENT' || code === 'ECONNREFUSED'
            ? 'no guestfb listening'
            : (error as Error).message;
        options.log(`${candidate}: ${why}`);
        continue;
      }
      fd.close(options.conn); // guestfb has its own copy now
      options.log(`${options.name}: shown by guestfb pid ${result.pid} (through ${candidate})`);
      const why = await Promise.race([
        result.ended.then(() => 'the session ended'),
        termination.promise,
      ]);
      result.close();
      options.log(`${options.name}: done (${why})`);
      return 0;
    }
    options.log(`${options.name}: no running guestfb took the domain; serving it in this process`);
    return await options.serveLocally(options.conn, options.name, termination.promise);
  } finally {
    termination.dispose();
  }
}
