/** wp_presentation_feedback: one presented or discarded event, then the server destroys it. */
import type { NativeClient } from '../../../native/index.js';
import { WpPresentationFeedbackResource } from '../../../build/protocols/presentation_time.js';
import type { PresentationSink, PresentedInfo } from '../core/surface.js';
import type { ServerContext } from './context.js';

export class PresentationFeedbackObject implements PresentationSink {
  readonly resource: WpPresentationFeedbackResource;

  constructor(
    private readonly context: ServerContext,
    client: NativeClient,
    version: number,
    id: number,
  ) {
    this.resource = WpPresentationFeedbackResource.create(client, version, id, {});
  }

  presented(info: PresentedInfo): void {
    if (!this.resource.alive) return;
    for (const output of this.context.outputResources.get(info.outputName) ?? []) {
      if (output.client === this.resource.client) this.resource.sendSyncOutput(output);
    }
    const seconds = info.timeNs / 1_000_000_000n;
    const nanoseconds = Number(info.timeNs % 1_000_000_000n);
    this.resource.sendPresented(
      Number(seconds >> 32n),
      Number(seconds & 0xffffffffn),
      nanoseconds,
      info.refreshNs,
      Number((info.sequence >> 32n) & 0xffffffffn),
      Number(info.sequence & 0xffffffffn),
      info.flags,
    );
    this.resource.destroy();
  }

  discarded(): void {
    if (!this.resource.alive) return;
    this.resource.sendDiscarded();
    this.resource.destroy();
  }
}
