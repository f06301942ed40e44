type AnyListener = (...args: unknown[]) => void;

/**
 * A small typed event emitter: listener exceptions are reported, never propagated to the caller.
 * Each event keeps an array of its listeners that on/off replace (never mutate), so emit walks a
 * stable snapshot without copying it: emitting allocates nothing but its argument list.
 */
export class TypedEmitter<E extends { [K in keyof E]: unknown[] }> {
  private readonly listeners = new Map<keyof E, readonly AnyListener[]>();

  constructor(private readonly onListenerError: (error: unknown, event: keyof E) => void) {}

  on<K extends keyof E>(event: K, listener: (...args: E[K]) => void): this {
    const current = this.listeners.get(event) ?? [];
    const added = listener as unknown as AnyListener;
    if (!current.includes(added)) this.listeners.set(event, [...current, added]);
    return this;
  }

  off<K extends keyof E>(event: K, listener: (...args: E[K]) => void): this {
    const current = this.listeners.get(event);
    const removed = listener as unknown as AnyListener;
    if (current?.includes(removed)) {
      this.listeners.set(
        event,
        current.filter((l) => l !== removed),
      );
    }
    return this;
  }

  emit<K extends keyof E>(event: K, ...args: E[K]): void {
    const listeners = this.listeners.get(event);
    if (!listeners) return;
    for (let i = 0; i < listeners.length; i++) {
      try {
        (listeners[i] as unknown as (...a: E[K]) => void)(...args);
      } catch (error) {
        this.onListenerError(error, event);
      }
    }
  }
}
