/**
 * How the scanner names things: XML names (snake_case) to TypeScript identifiers, the
 * identifiers generated for each interface and enum, and parameter names that are valid and
 * distinct.
 */

const RESERVED = new Set(
  (
    'break case catch class const continue debugger default delete do else enum export extends ' +
    'false finally for function if implements import in instanceof interface let new null ' +
    'package private protected public return static super switch this throw true try typeof var ' +
    'void while with yield await arguments eval undefined'
  ).split(' '),
);

function words(name: string): string[] {
  return name.split('_').filter((word) => word !== '');
}

export function pascalCase(name: string): string {
  const parts = words(name);
  if (parts.length === 0) throw new Error(`cannot make an identifier of "${name}"`);
  return parts.map((word) => word[0].toUpperCase() + word.slice(1)).join('');
}

export function camelCase(name: string): string {
  const pascal = pascalCase(name);
  return pascal[0].toLowerCase() + pascal.slice(1);
}

/** A parameter name for an XML argument that is a valid, non-reserved identifier. */
function safeIdentifier(name: string): string {
  let result = camelCase(name);
  if (/^[0-9]/.test(result)) result = `_${result}`;
  while (RESERVED.has(result)) result = `${result}_`;
  return result;
}

/** Turns names into distinct safe identifiers (a clash gets `_` appended), avoiding `reserved`. */
export function identifierAllocator(reserved: string[] = []): (name: string) => string {
  const taken = new Set(reserved);
  return (name) => {
    let identifier = safeIdentifier(name);
    while (taken.has(identifier)) identifier = `${identifier}_`;
    taken.add(identifier);
    return identifier;
  };
}

/** Key of an enum entry in its const object: the XML name, `_`-prefixed if it starts with a digit. */
export function entryKey(name: string): string {
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

/** The identifiers generated for one interface. */
export function interfaceNames(name: string) {
  const pascal = pascalCase(name);
  return {
    spec: `${camelCase(name)}Interface`,
    resource: `${pascal}Resource`,
    requests: `${pascal}Requests`,
    proxy: `${pascal}Proxy`,
    events: `${pascal}Events`,
  };
}

export function enumNames(interfaceName: string, enumName: string) {
  const type = `${pascalCase(interfaceName)}${pascalCase(enumName)}`;
  return { type, guard: `is${type}` };
}

/** Members of the runtime base classes (and generated ones) that requests/events must not shadow. */
export const PROXY_MEMBERS = new Set([
  'native',
  'id',
  'version',
  'interfaceName',
  'alive',
  'destroyProxy',
  'checkRequest',
  'marshal',
  'marshalConstructor',
  'dispatchEvent',
  'listener',
  'setListener',
  'constructor',
]);
