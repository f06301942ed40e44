/**
 * zwp_linux_buffer_params_v1: the protocol face of dmabuf/params.ts. Fatal validation results
 * become protocol errors on this object; import failures become `failed` (create) or
 * INVALID_WL_BUFFER (create_immed).
 */
import type { NativeClient } from '../../../native/index.js';
import {
  ZwpLinuxBufferParamsV1Error,
  ZwpLinuxBufferParamsV1Resource,
  type ZwpLinuxBufferParamsV1Requests,
} from '../../../build/protocols/linux_dmabuf_unstable_v1.js';
import { DmabufBuffer } from '../buffers/dmabuf-buffer.js';
import { DmabufParams, closeDmabufAttributes } from '../dmabuf/params.js';
import type { ServerContext } from './context.js';
import { describeClient } from './context.js';
import { BufferObject, type BufferStorage } from './wl-buffer.js';

export class BufferParamsObject implements ZwpLinuxBufferParamsV1Requests {
  readonly resource: ZwpLinuxBufferParamsV1Resource;
  private readonly params: DmabufParams;

  constructor(
    private readonly context: ServerContext,
    client: NativeClient,
    version: number,
    id: number,
  ) {
    this.params = new DmabufParams(context.dmabufFormats, context.fd);
    this.resource = ZwpLinuxBufferParamsV1Resource.create(client, version, id, this);
    // Planes never handed to a buffer are closed with the params object, however it goes.
    this.resource.onDestroy(() => this.params.destroy());
  }

  add(
    resource: ZwpLinuxBufferParamsV1Resource,
    planeFd: number,
    planeIndex: number,
    offset: number,
    stride: number,
    modifierHi: number,
    modifierLo: number,
  ): void {
    const result = this.params.add(planeFd, planeIndex, offset, stride, modifierHi, modifierLo);
    if (!result.ok) resource.postError(result.code, result.message);
  }

  create(
    resource: ZwpLinuxBufferParamsV1Resource,
    width: number,
    height: number,
    format: number,
    flags: number,
  ): void {
    const buffer = this.build(resource, width, height, format, flags);
    if (buffer === 'fatal') return;
    if (buffer === null) {
      resource.sendFailed();
      return;
    }
    const object = new BufferObject(resource.client, 0, buffer);
    resource.sendCreated(object.resource);
  }

  createImmed(
    resource: ZwpLinuxBufferParamsV1Resource,
    bufferId: number,
    width: number,
    height: number,
    format: number,
    flags: number,
  ): void {
    const buffer = this.build(resource, width, height, format, flags);
    if (buffer === 'fatal') return;
    if (buffer === null) {
      resource.postError(ZwpLinuxBufferParamsV1Error.invalid_wl_buffer, 'dma-buf import failed');
      return;
    }
    new BufferObject(resource.client, bufferId, buffer);
  }

  private build(
    resource: ZwpLinuxBufferParamsV1Resource,
    width: number,
    height: number,
    format: number,
    flags: number,
  ): BufferStorage | 'fatal' | null {
    const result = this.params.create(width, height, format, flags);
    if (!result.ok) {
      if (result.fatal) {
        resource.postError(result.code, result.message);
        return 'fatal';
      }
      this.context.log(
        `${describeClient(resource.client)}: dma-buf import failed: ${result.message}`,
      );
      return null;
    }
    let buffer: DmabufBuffer;
    try {
      buffer = new DmabufBuffer(result.attributes, this.context.fd); // takes the plane fds
    } catch (error) {
      closeDmabufAttributes(result.attributes, this.context.fd);
      this.context.log(`dma-buf import failed: ${String(error)}`);
      return null;
    }
    return {
      render: buffer,
      copyOnCommit: false,
      destroy: () => buffer.destroy(),
      watchUnreadable: (report) => {
        buffer.onUnreadable = report;
      },
    };
  }
}
