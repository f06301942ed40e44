/**
 * The virtio-input device model on the generic vhost-user back-end: queue 0 carries events to
 * the guest (one 8-byte event per buffer the guest posted), queue 1 carries status from the
 * guest (LED state), which is consumed. The config space answers select/subsel (evdev.ts).
 *
 * QEMU gives both queues only 4 entries, so events are held here and delivered as the guest
 * posts buffers (the guest kicks after refilling). The held queue is bounded: past
 * `maxHeldEvents`, the oldest group of events that releases nothing goes (motion first), and
 * every dropped event is counted; key and button releases are never dropped, so nothing sticks.
 */
import type { DeviceContext, DeviceModel } from '../vhost-user/vhost-user-device.js';
import { gatherReadable, scatterWritable, type Chain } from '../vhost-user/virtqueue.js';
import {
  CONFIG_SIZE,
  configSpace,
  decodeEvent,
  encodeEvent,
  EV_ABS,
  EV_KEY,
  EV_LED,
  EV_REL,
  EV_SYN,
  EVENT_SIZE,
  SYN_REPORT,
  type InputEvent,
  type InputIdentity,
} from './evdev.js';

export const EVENT_QUEUE = 0;
export const STATUS_QUEUE = 1;

export interface InputCounters {
  /** Events written into guest buffers. */
  eventsDelivered: number;
  /** Events dropped because the held queue was full (the guest did not take them). */
  eventsDropped: number;
  /** Events dropped because no guest driver was ready (queue not running). */
  eventsWithoutDriver: number;
  /** Status events the guest sent (LEDs). */
  statusEvents: number;
}

/** One SYN_REPORT-terminated group of events. */
interface EventGroup {
  events: InputEvent[];
  /** Holds a key/button release: never dropped. */
  releases: boolean;
  /** Only motion (EV_ABS/EV_REL): dropped first. */
  motionOnly: boolean;
}

export const DEFAULT_MAX_HELD_EVENTS = 1024;

export class InputDeviceModel implements DeviceModel {
  readonly queueCount = 2;
  /** virtio-input has no feature bits of its own (VERSION_1 comes with the back-end). */
  readonly deviceFeatures = 0n;
  select = 0;
  subsel = 0;
  /** LED state the guest last reported, by LED code. */
  readonly leds = new Map<number, number>();
  private readonly held: EventGroup[] = [];
  private heldCount = 0;
  /** Offset into held[0].events of the next event to deliver. */
  private nextEvent = 0;
  private readonly scratch = new Uint8Array(EVENT_SIZE);

  constructor(
    private readonly context: DeviceContext,
    private readonly identity: InputIdentity,
    readonly counters: InputCounters,
    private readonly maxHeldEvents = DEFAULT_MAX_HELD_EVENTS,
  ) {}

  /** Events waiting for guest buffers. */
  get heldEvents(): number {
    return this.heldCount - this.nextEvent;
  }

  featuresChanged(): void {}

  readConfig(): Uint8Array {
    return configSpace(this.select, this.subsel, this.identity);
  }

  writeConfig(offset: number, data: Uint8Array): void {
    // Only select (byte 0) and subsel (byte 1) are writable.
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      if (at === 0) this.select = data[i]!;
      else if (at === 1) this.subsel = data[i]!;
      else if (at >= CONFIG_SIZE) break;
    }
  }

  reset(): void {
    this.select = this.subsel = 0;
    this.clear();
  }

  memoryChanged(): void {}

  /** Queues one group of events (SYN_REPORT appended) and delivers what the guest has room for. */
  send(events: readonly InputEvent[]): void {
    if (events.length === 0) return;
    const group: EventGroup = {
      events: [...events, { type: EV_SYN, code: SYN_REPORT, value: 0 }],
      releases: events.some((e) => e.type === EV_KEY && e.value === 0),
      motionOnly: events.every((e) => e.type === EV_ABS || e.type === EV_REL),
    };
    this.held.push(group);
    this.heldCount += group.events.length;
    this.bound();
    this.context.runQueue(EVENT_QUEUE);
  }

  /** Drops whole groups, oldest motion first, then oldest without a release, until in bounds. */
  private bound(): void {
    for (const pick of [(g: EventGroup) => g.motionOnly, (g: EventGroup) => !g.releases]) {
      // held[0] may be partly delivered: never split a group the guest has begun reading.
      for (let i = 1; i < this.held.length && this.heldEvents > this.maxHeldEvents;) {
        const group = this.held[i]!;
        if (!pick(group)) {
          i++;
          continue;
        }
        this.held.splice(i, 1);
        this.heldCount -= group.events.length;
        this.counters.eventsDropped += group.events.length;
      }
    }
  }

  /** Forgets held events (device reset, guest gone). */
  clear(): void {
    this.held.length = 0;
    this.heldCount = 0;
    this.nextEvent = 0;
  }

  wantsChain(queue: number): boolean {
    return queue !== EVENT_QUEUE || this.heldEvents > 0;
  }

  processChain(queue: number, chain: Chain): number {
    if (queue === STATUS_QUEUE) {
      const bytes = gatherReadable(chain, 64);
      if (bytes && bytes.length >= EVENT_SIZE) {
        const event = decodeEvent(bytes);
        this.counters.statusEvents++;
        if (event.type === EV_LED) this.leds.set(event.code, event.value);
      } else {
        this.context.counters.dropped++;
      }
      return 0;
    }
    const group = this.held[0];
    if (!group) return 0;
    const event = group.events[this.nextEvent]!;
    if (!scatterWritable(chain, encodeEvent(event, this.scratch))) {
      this.context.counters.dropped++;
      this.context.log('warn', `event buffer of ${chain.writableLength} bytes is too small`);
      return 0;
    }
    this.counters.eventsDelivered++;
    this.context.counters.responses++;
    if (++this.nextEvent === group.events.length) {
      this.held.shift();
      this.heldCount -= group.events.length;
      this.nextEvent = 0;
    }
    return EVENT_SIZE;
  }
}
