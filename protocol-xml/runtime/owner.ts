/**
 * Typed wrappers live in the `owner` slot of native resources and proxies; these helpers read
 * them back with a class check, for the generated dispatchers.
 */
import type { WireValue } from '../../native/index.js';

/** Anything with a prototype: a generated resource or proxy class (constructors may be private). */
export interface ClassOf<T> {
  readonly prototype: T;
  readonly name: string;
}

function isInstance<T>(value: unknown, cls: ClassOf<T>): value is T {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.prototype.isPrototypeOf.call(cls.prototype, value)
  );
}

/**
 * The typed wrapper stored in a native object's `owner` slot, checked against `cls`. Null stays
 * null; a native object without the expected wrapper is a programming error and throws (the
 * dispatcher turns that into an implementation error for the client).
 */
export function ownerOf<T>(value: WireValue, cls: ClassOf<T>): T | null {
  if (value === null) return null;
  const owner = typeof value === 'object' && 'owner' in value ? value.owner : undefined;
  if (!isInstance(owner, cls)) {
    throw new TypeError(`argument is not a ${cls.name} (got ${describe(value)})`);
  }
  return owner;
}

/** ownerOf for arguments that libwayland guarantees non-null. */
export function requireOwner<T>(value: WireValue, cls: ClassOf<T>): T {
  const owner = ownerOf(value, cls);
  if (owner === null) throw new TypeError(`argument of type ${cls.name} is null`);
  return owner;
}

function describe(value: WireValue): string {
  if (typeof value === 'object' && value !== null && 'interfaceName' in value) {
    return `${value.interfaceName}@${value.id}`;
  }
  return typeof value;
}
