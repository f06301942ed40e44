/** zwp_linux_dmabuf_feedback_v1: sends the compiled feedback once (the table is never rebuilt). */
import type { NativeClient } from '../../../native/index.js';
import { ZwpLinuxDmabufFeedbackV1Resource } from '../../../build/protocols/linux_dmabuf_unstable_v1.js';
import type { ServerContext } from './context.js';

export class DmabufFeedbackObject {
  readonly resource: ZwpLinuxDmabufFeedbackV1Resource;

  constructor(context: ServerContext, client: NativeClient, version: number, id: number) {
    this.resource = ZwpLinuxDmabufFeedbackV1Resource.create(client, version, id, {});
    const feedback = context.dmabufFeedback;
    // The table fd is borrowed: libwayland dups it into the message.
    this.resource.sendFormatTable(feedback.tableFd, feedback.tableSize);
    this.resource.sendMainDevice(feedback.mainDevice);
    for (const tranche of feedback.tranches) {
      this.resource.sendTrancheTargetDevice(tranche.targetDevice);
      this.resource.sendTrancheFormats(tranche.formatIndices);
      this.resource.sendTrancheFlags(tranche.flags);
      this.resource.sendTrancheDone();
    }
    this.resource.sendDone();
  }
}
