type AnyListener = (...args: unknown[]) => void;

/** An event's arguments: at most four (see emit). */
type EventArgs =
  | []
  | [unknown]
  | [unknown, unknown]
  | [unknown, unknown, unknown]
  | [unknown, unknown, unknown, unknown];

/**
 * A small typed event emitter: listener exceptions are reported, never propagated to the caller.
 * Each event keeps an array of its listeners that on/off replace (never mutate), so emit walks a
 * stable snapshot without copying it: emitting allocates nothing.
 */
export class TypedEmitter<E extends { [K in keyof E]: EventArgs }> {
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

  // Events carry at most four arguments; passing them one by one (not as a rest array spread
  // into each listener) keeps a guest frame's flush event from allocating. A listener gets as
  // many arguments as emit was given (arguments.length is read without making the object).
  emit<K extends keyof E>(event: K, ...args: E[K]): void;
  emit(event: keyof E, a?: unknown, b?: unknown, c?: unknown, d?: unknown): void {
    const listeners = this.listeners.get(event);
    if (!listeners) return;
    const count = arguments.length - 1;
    for (let i = 0; i < listeners.length; i++) {
      const listener = listeners[i]!;
      try {
        if (count === 0) listener();
        else if (count === 1) listener(a);
        else if (count === 2) listener(a, b);
        else if (count === 3) listener(a, b, c);
        else listener(a, b, c, d);
      } catch (error) {
        this.onListenerError(error, event);
      }
    }
  }
}
