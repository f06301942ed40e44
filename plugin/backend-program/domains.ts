/**
 * The running guestfb's side of the handoff: every domain a back-end helper hands over becomes
 * one more source of this process's presenter (its windows are titled with the domain's name),
 * and goes away with its session.
 */
import { linesOf } from '../common/log.js';
import type { GuestfbPlugin } from '../index.js';
import type { FramebufferSource } from '../sources/types.js';
import { createVhostUserGpuBackend } from '../sources/virtio-gpu/index.js';
import { HandoffServer, type HandedDomain } from './handoff.js';

interface Domain {
  name: string;
  source: FramebufferSource;
  remove: () => void;
}

export class LibvirtDomains {
  private readonly server: HandoffServer;
  private readonly live = new Set<Domain>();

  constructor(
    private readonly plugin: GuestfbPlugin,
    private readonly log: (message: string) => void,
    options: { path?: string; maxDomains?: number } = {},
  ) {
    this.server = new HandoffServer({
      path: options.path,
      maxDomains: options.maxDomains,
      log,
      accept: (domain, end) => this.accept(domain, end),
    });
  }

  get path(): string {
    return this.server.path;
  }

  /** Names of the domains shown now. */
  names(): string[] {
    return [...this.live].map((domain) => domain.name);
  }

  get counters() {
    return this.server.counters;
  }

  private accept(handed: HandedDomain, end: () => void): string | null {
    if (handed.type !== 'gpu') return `guestfb takes no "${handed.type}" devices over the handoff`;
    const presenter = this.plugin.presenter;
    if (!presenter) return 'guestfb is not connected to a compositor';
    const name = handed.name;
    const source = createVhostUserGpuBackend({
      role: 'fd',
      fd: handed.fd,
      name,
      log: linesOf(this.log, `${name}: `),
    });
    const domain: Domain = { name, source, remove: presenter.addSource({ name, source }) };
    this.live.add(domain);
    source.on('disconnected', (reason) => {
      // Let the presenter finish handling this event before its binding goes.
      setImmediate(() => {
        if (!this.live.delete(domain)) return;
        domain.remove();
        source.close();
        end();
        this.log(`${name}: gone (${reason})`);
      });
    });
    return null;
  }

  /** Stops taking domains and lets go of every one (windows, sessions, fds). */
  close(): void {
    this.server.shutdown();
    for (const domain of [...this.live]) {
      this.live.delete(domain);
      domain.remove();
      domain.source.close();
    }
  }
}
