/**
 * What the scanner's emitters share: the libwayland signature of a message, the catalog of the
 * whole protocol set, JSDoc rendering, the module writer and `EmitContext` (one module being
 * emitted).
 */
import type { Arg, Description, Enum, Interface, Message, Protocol } from './model.js';
import { camelCase, enumNames, interfaceNames } from './names.js';

export interface GenerateOptions {
  /** Module specifier of protocol-xml/runtime as seen from the output folder (no trailing /). */
  runtimeModule: string;
  /** Module specifier of native/index.js as seen from the output folder. */
  nativeModule: string;
}

/** The libwayland signature letter of an argument type. */
const LETTER: Record<Arg['type'], string> = {
  int: 'i',
  uint: 'u',
  fixed: 'f',
  string: 's',
  object: 'o',
  new_id: 'n',
  array: 'a',
  fd: 'h',
};

/** TS type and cast of a received int, uint, fixed, fd, string or array argument `at`. */
export function receivedScalar(arg: Arg, at: string): { type: string; expr: string } {
  const nullable = arg.allowNull ? ' | null' : '';
  if (arg.type === 'string' || arg.type === 'array') {
    const type = `${arg.type === 'string' ? 'string' : 'Uint8Array'}${nullable}`;
    return { type, expr: `${at} as ${type}` };
  }
  return { type: 'number', expr: `${at} as number` };
}

/** The libwayland signature of a message: since prefix, `?` for nullable, untyped new_id as `sun`. */
export function messageSignature(message: Message): {
  signature: string;
  types: (string | null)[];
} {
  let signature = message.since > 1 ? String(message.since) : '';
  const types: (string | null)[] = [];
  for (const arg of message.args) {
    if (arg.type === 'new_id' && arg.interface === null) {
      signature += 'su';
      types.push(null, null);
    }
    signature += (arg.allowNull ? '?' : '') + LETTER[arg.type];
    types.push(arg.type === 'object' || arg.type === 'new_id' ? arg.interface : null);
  }
  return { signature, types };
}

/** Every interface a protocol's messages name. */
export function referencedInterfaces(protocol: Protocol): Set<string> {
  const names = new Set<string>();
  for (const iface of protocol.interfaces) {
    for (const message of [...iface.requests, ...iface.events]) {
      for (const arg of message.args) if (arg.interface !== null) names.add(arg.interface);
    }
  }
  return names;
}

export interface EnumInfo {
  protocol: Protocol;
  iface: Interface;
  enumeration: Enum;
}

/** What every protocol of the set defines: interface owners and enums, by name. */
export interface Catalog {
  interfaceOwner: Map<string, Protocol>;
  enums: Map<string, EnumInfo>;
}

export function buildCatalog(protocols: readonly Protocol[]): Catalog {
  const interfaceOwner = new Map<string, Protocol>();
  const enums = new Map<string, EnumInfo>();
  const exported = new Map<string, string>();
  const claim = (identifier: string, what: string) => {
    const previous = exported.get(identifier);
    if (previous !== undefined) {
      throw new Error(`generated name ${identifier} for ${what} clashes with ${previous}`);
    }
    exported.set(identifier, what);
  };
  for (const protocol of protocols) {
    for (const iface of protocol.interfaces) {
      if (interfaceOwner.has(iface.name)) {
        throw new Error(`interface ${iface.name} defined twice (run selectProtocols first)`);
      }
      interfaceOwner.set(iface.name, protocol);
      for (const [kind, messages] of [
        ['request', iface.requests],
        ['event', iface.events],
      ] as const) {
        const methods = new Map<string, string>();
        for (const message of messages) {
          const method = camelCase(message.name);
          const previous = methods.get(method);
          if (previous !== undefined) {
            throw new Error(
              `${protocol.source}: ${kind}s ${iface.name}.${previous} and ${message.name} both become ${method}`,
            );
          }
          methods.set(method, message.name);
        }
      }
      for (const identifier of Object.values(interfaceNames(iface.name))) {
        claim(identifier, `interface ${iface.name}`);
      }
      for (const enumeration of iface.enums) {
        enums.set(`${iface.name}.${enumeration.name}`, { protocol, iface, enumeration });
        for (const identifier of Object.values(enumNames(iface.name, enumeration.name))) {
          claim(identifier, `enum ${iface.name}.${enumeration.name}`);
        }
      }
    }
  }
  return { interfaceOwner, enums };
}

/**
 * Renders a JSDoc block (or nothing) at `indent`: the summary, then `notes`, the description
 * text and `tags`, as paragraphs. A single line becomes a one-line comment.
 */
export function jsdoc(
  indent: string,
  description: Description | null,
  extra: { summary?: string | null; notes?: string[]; tags?: string[] } = {},
): string[] {
  const paragraphs: string[][] = [];
  const summary = description?.summary ?? extra.summary ?? null;
  if (summary && summary.trim()) paragraphs.push([summary.trim()]);
  if (extra.notes && extra.notes.length > 0) paragraphs.push(extra.notes);
  if (description?.text) paragraphs.push(description.text.split('\n'));
  if (extra.tags && extra.tags.length > 0) paragraphs.push(extra.tags);
  if (paragraphs.length === 0) return [];
  const body = paragraphs.flatMap((paragraph, i) => (i === 0 ? paragraph : ['', ...paragraph]));
  const escape = (line: string) => line.replace(/\*\//g, '*\\/');
  if (body.length === 1) return [`${indent}/** ${escape(body[0])} */`];
  return [
    `${indent}/**`,
    ...body.map((line) => (line === '' ? `${indent} *` : `${indent} * ${escape(line)}`)),
    `${indent} */`,
  ];
}

export function quote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The lines of one generated module and the imports they need. */
export class ModuleWriter {
  readonly lines: string[] = [];
  /** module specifier -> imported names */
  readonly #imports = new Map<string, Set<string>>();
  readonly #typeImports = new Map<string, Set<string>>();
  readonly #sideEffects = new Set<string>();

  use(module: string, name: string): string {
    let names = this.#imports.get(module);
    if (!names) this.#imports.set(module, (names = new Set()));
    names.add(name);
    return name;
  }

  useType(module: string, name: string): string {
    let names = this.#typeImports.get(module);
    if (!names) this.#typeImports.set(module, (names = new Set()));
    names.add(name);
    return name;
  }

  load(module: string): void {
    this.#sideEffects.add(module);
  }

  importLines(): string[] {
    const lines: string[] = [];
    const modules = new Set([...this.#imports.keys(), ...this.#typeImports.keys()]);
    for (const module of [...modules].sort()) {
      const values = [...(this.#imports.get(module) ?? [])];
      const types = [...(this.#typeImports.get(module) ?? [])].filter((n) => !values.includes(n));
      const specifiers = [...values.sort(), ...types.sort().map((name) => `type ${name}`)];
      lines.push(`import { ${specifiers.join(', ')} } from ${quote(module)};`);
    }
    for (const module of [...this.#sideEffects].sort()) {
      if (!modules.has(module)) lines.push(`import ${quote(module)};`);
    }
    return lines;
  }
}
/**
 * One protocol's module being emitted: its lines and imports, and the lookups the server and
 * client emitters share (imports of the runtime, the addon and other protocols' symbols; enum
 * types and notes for arguments).
 */
export class EmitContext {
  readonly out = new ModuleWriter();

  constructor(
    readonly protocol: Protocol,
    readonly catalog: Catalog,
    readonly options: GenerateOptions,
  ) {}

  get lines(): string[] {
    return this.out.lines;
  }

  runtime(module: string, name: string, typeOnly = false): string {
    const specifier = `${this.options.runtimeModule}/${module}.js`;
    return typeOnly ? this.out.useType(specifier, name) : this.out.use(specifier, name);
  }

  native(name: string): string {
    return this.out.useType(this.options.nativeModule, name);
  }

  /** Identifier for a generated symbol of `interfaceName`, importing it when it lives elsewhere. */
  ref(interfaceName: string, kind: keyof ReturnType<typeof interfaceNames>): string {
    const identifier = interfaceNames(interfaceName)[kind];
    const owner = this.catalog.interfaceOwner.get(interfaceName);
    if (!owner) throw new Error(`${this.protocol.source}: unknown interface ${interfaceName}`);
    if (owner !== this.protocol) this.out.use(`./${owner.name}.js`, identifier);
    return identifier;
  }

  /** The enum type for an argument (typed side) or null when it has none or is a bitfield. */
  enumType(iface: Interface, arg: Arg): string | null {
    const info = this.enumInfo(iface, arg);
    if (!info || info.enumeration.bitfield) return null;
    const identifier = enumNames(info.iface.name, info.enumeration.name).type;
    if (info.protocol !== this.protocol) this.out.use(`./${info.protocol.name}.js`, identifier);
    return identifier;
  }

  enumInfo(iface: Interface, arg: Arg): EnumInfo | null {
    if (arg.enum === null) return null;
    const key = arg.enum.includes('.') ? arg.enum : `${iface.name}.${arg.enum}`;
    return this.catalog.enums.get(key) ?? null;
  }

  enumNote(iface: Interface, arg: Arg): string {
    const info = this.enumInfo(iface, arg);
    if (!info) return '';
    const names = enumNames(info.iface.name, info.enumeration.name);
    return info.enumeration.bitfield
      ? ` (bitfield ${names.type}; check with ${names.guard})`
      : ` (${names.type}; check with ${names.guard})`;
  }

  messageTags(message: Message, extra: string[]): string[] {
    const tags = [...extra];
    if (message.since > 1) tags.push(`@since ${message.since}`);
    if (message.deprecatedSince !== null)
      tags.push(`@deprecated since version ${message.deprecatedSince}`);
    return tags;
  }
}
