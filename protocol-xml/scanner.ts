/**
 * The protocol scanner: turns parsed Wayland protocol XML (./model.ts) into TypeScript for both
 * sides, one module per protocol:
 *
 * - `xInterface`: the InterfaceSpec (libwayland signatures and types) handed to the addon.
 * - enums: a `const` object, a type, and `isX(value, version?)` that validates a value (bitfields
 *   by mask) and, given a version, rejects entries newer than it.
 * - server: `XResource` (typed event senders, `create`, `global`) and `XRequests`, the handler
 *   interface the compositor implements.
 * - client: `XProxy` (typed requests) and `XEvents`, the listener interface.
 *
 * Interface names must be unique across the whole set (the addon keys its tables by name):
 * `selectProtocols` drops a protocol that redefines an interface an earlier one defines, and any
 * protocol that references an interface nobody defines, with a logged note.
 */
import type { Arg, Description, Entry, Enum, Interface, Message, Protocol } from './model.js';

export { parseProtocol } from './model.js';
export type { Protocol } from './model.js';

export interface GenerateOptions {
  /** Module specifier of protocol-xml/runtime as seen from the output folder (no trailing /). */
  runtimeModule: string;
  /** Module specifier of native/index.js as seen from the output folder. */
  nativeModule: string;
}

export interface GeneratedFile {
  /** File name inside the output folder, e.g. `xdg_shell.ts`. */
  fileName: string;
  /** The protocol it came from (null for index.ts). */
  protocol: string | null;
  text: string;
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

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

/** Key of an enum entry in its const object: the XML name, `_`-prefixed if it starts with a digit. */
/** Turns names into distinct safe identifiers (a clash gets `_` appended), avoiding `reserved`. */
function identifierAllocator(reserved: string[] = []): (name: string) => string {
  const taken = new Set(reserved);
  return (name) => {
    let identifier = safeIdentifier(name);
    while (taken.has(identifier)) identifier = `${identifier}_`;
    taken.add(identifier);
    return identifier;
  };
}

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
const PROXY_MEMBERS = new Set([
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
function receivedScalar(arg: Arg, at: string): { type: string; expr: string } {
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

// ---------------------------------------------------------------------------------------------
// Protocol selection
// ---------------------------------------------------------------------------------------------

/**
 * Keeps protocols in the given (priority) order, dropping one whose interface names were already
 * taken, or which references an interface no kept protocol defines; each drop is logged.
 */
export function selectProtocols(
  protocols: readonly Protocol[],
  log: (note: string) => void = () => {},
): Protocol[] {
  const owner = new Map<string, Protocol>();
  const protocolNames = new Set<string>();
  let kept: Protocol[] = [];
  for (const protocol of protocols) {
    if (protocolNames.has(protocol.name)) {
      log(`skipping ${protocol.source}: protocol name ${protocol.name} already read`);
      continue;
    }
    const taken = protocol.interfaces.filter((iface) => owner.has(iface.name));
    if (taken.length > 0) {
      const list = taken.map((iface) => `${iface.name} (${owner.get(iface.name)?.name})`);
      log(`skipping protocol ${protocol.name} (${protocol.source}): redefines ${list.join(', ')}`);
      continue;
    }
    protocolNames.add(protocol.name);
    for (const iface of protocol.interfaces) owner.set(iface.name, protocol);
    kept.push(protocol);
  }
  // Drop protocols with dangling references until none are left (a drop can orphan others).
  for (let changed = true; changed;) {
    changed = false;
    const defined = new Set(kept.flatMap((protocol) => protocol.interfaces.map((i) => i.name)));
    kept = kept.filter((protocol) => {
      const missing = [...referencedInterfaces(protocol)].filter((name) => !defined.has(name));
      if (missing.length === 0) return true;
      log(
        `skipping protocol ${protocol.name} (${protocol.source}): no definition of ${missing.join(', ')}`,
      );
      changed = true;
      return false;
    });
  }
  return kept;
}

function referencedInterfaces(protocol: Protocol): Set<string> {
  const names = new Set<string>();
  for (const iface of protocol.interfaces) {
    for (const message of [...iface.requests, ...iface.events]) {
      for (const arg of message.args) if (arg.interface !== null) names.add(arg.interface);
    }
  }
  return names;
}

// ---------------------------------------------------------------------------------------------
// Emission
// ---------------------------------------------------------------------------------------------

interface EnumInfo {
  protocol: Protocol;
  iface: Interface;
  enumeration: Enum;
}

interface Catalog {
  interfaceOwner: Map<string, Protocol>;
  enums: Map<string, EnumInfo>;
}

function buildCatalog(protocols: readonly Protocol[]): Catalog {
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
function jsdoc(
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

function quote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

class ModuleWriter {
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

/** Emits one protocol's module. */
class ProtocolEmitter {
  readonly #out = new ModuleWriter();
  readonly #protocol: Protocol;
  readonly #catalog: Catalog;
  readonly #options: GenerateOptions;

  constructor(protocol: Protocol, catalog: Catalog, options: GenerateOptions) {
    this.#protocol = protocol;
    this.#catalog = catalog;
    this.#options = options;
  }

  get #lines(): string[] {
    return this.#out.lines;
  }

  #runtime(module: string, name: string, typeOnly = false): string {
    const specifier = `${this.#options.runtimeModule}/${module}.js`;
    return typeOnly ? this.#out.useType(specifier, name) : this.#out.use(specifier, name);
  }

  #native(name: string): string {
    return this.#out.useType(this.#options.nativeModule, name);
  }

  /** Identifier for a generated symbol of `interfaceName`, importing it when it lives elsewhere. */
  #ref(interfaceName: string, kind: keyof ReturnType<typeof interfaceNames>): string {
    const identifier = interfaceNames(interfaceName)[kind];
    const owner = this.#catalog.interfaceOwner.get(interfaceName);
    if (!owner) throw new Error(`${this.#protocol.source}: unknown interface ${interfaceName}`);
    if (owner !== this.#protocol) this.#out.use(`./${owner.name}.js`, identifier);
    return identifier;
  }

  /** The enum type for an argument (typed side) or null when it has none or is a bitfield. */
  #enumType(iface: Interface, arg: Arg): string | null {
    const info = this.#enumInfo(iface, arg);
    if (!info || info.enumeration.bitfield) return null;
    const identifier = enumNames(info.iface.name, info.enumeration.name).type;
    if (info.protocol !== this.#protocol) this.#out.use(`./${info.protocol.name}.js`, identifier);
    return identifier;
  }

  #enumInfo(iface: Interface, arg: Arg): EnumInfo | null {
    if (arg.enum === null) return null;
    const key = arg.enum.includes('.') ? arg.enum : `${iface.name}.${arg.enum}`;
    return this.#catalog.enums.get(key) ?? null;
  }

  #enumNote(iface: Interface, arg: Arg): string {
    const info = this.#enumInfo(iface, arg);
    if (!info) return '';
    const names = enumNames(info.iface.name, info.enumeration.name);
    return info.enumeration.bitfield
      ? ` (bitfield ${names.type}; check with ${names.guard})`
      : ` (${names.type}; check with ${names.guard})`;
  }

  emit(): string {
    const protocol = this.#protocol;
    const body: string[] = [];
    const swap = (target: string[]) => {
      const saved = this.#lines.splice(0);
      this.#lines.push(...target);
      return saved;
    };
    swap(body);

    for (const iface of protocol.interfaces) {
      this.#emitSpec(iface);
      for (const enumeration of iface.enums) this.#emitEnum(iface, enumeration);
      this.#emitRequestsInterface(iface);
      this.#emitResource(iface);
      this.#emitEventsInterface(iface);
      this.#emitProxy(iface);
    }
    const register = this.#runtime('interfaces', 'registerInterfaces');
    const specs = protocol.interfaces.map((iface) => interfaceNames(iface.name).spec);
    this.#lines.push(`${register}([${specs.join(', ')}]);`);
    const emitted = swap([]);

    // Load every protocol this one references, so its specs are registered before first use.
    for (const name of referencedInterfaces(protocol)) {
      const owner = this.#catalog.interfaceOwner.get(name);
      if (owner && owner !== protocol) this.#out.load(`./${owner.name}.js`);
    }

    const header = [
      `// Generated by guestfb's protocol scanner from the ${protocol.name} protocol`,
      `// (${protocol.source.split('/').slice(-1)[0]}). Do not edit: the build regenerates it.`,
    ];
    if (protocol.copyright) {
      header.push('//', ...protocol.copyright.split('\n').map((line) => `// ${line}`.trimEnd()));
    }
    const moduleDoc = jsdoc('', protocol.description, { notes: [`Protocol ${protocol.name}.`] });
    return [...header, '', ...this.#out.importLines(), '', ...moduleDoc, '', ...emitted, ''].join(
      '\n',
    );
  }

  #emitSpec(iface: Interface): void {
    const specType = this.#native('InterfaceSpec');
    const names = interfaceNames(iface.name);
    const messages = (list: Message[]) =>
      list.map((message) => {
        const { signature, types } = messageSignature(message);
        const typeList = types.map((type) => (type === null ? 'null' : quote(type))).join(', ');
        return `    { name: ${quote(message.name)}, signature: ${quote(signature)}, types: [${typeList}] },`;
      });
    const list = (key: string, messages_: Message[]) =>
      messages_.length === 0 ? [`  ${key}: [],`] : [`  ${key}: [`, ...messages(messages_), `  ],`];
    this.#lines.push(
      `/** The libwayland table of ${iface.name} (version ${iface.version}). */`,
      `export const ${names.spec}: ${specType} = {`,
      `  name: ${quote(iface.name)},`,
      `  version: ${iface.version},`,
      ...list('requests', iface.requests),
      ...list('events', iface.events),
      `};`,
      '',
    );
  }

  #emitEnum(iface: Interface, enumeration: Enum): void {
    const { type, guard } = enumNames(iface.name, enumeration.name);
    const tags = [];
    if (enumeration.since > 1) tags.push(`@since ${enumeration.since}`);
    this.#lines.push(
      ...jsdoc('', enumeration.description, {
        notes: [`${iface.name}.${enumeration.name}${enumeration.bitfield ? ' (bitfield)' : ''}.`],
        tags,
      }),
      `export const ${type} = {`,
    );
    const entryDoc = (entry: Entry) => {
      const entryTags = [];
      if (entry.since > 1) entryTags.push(`@since ${entry.since}`);
      if (entry.deprecatedSince !== null) {
        entryTags.push(`@deprecated since version ${entry.deprecatedSince}`);
      }
      return jsdoc('  ', entry.description, { summary: entry.summary, tags: entryTags });
    };
    for (const entry of enumeration.entries) {
      this.#lines.push(
        ...entryDoc(entry),
        `  ${entryKey(entry.name)}: ${formatValue(entry.value)},`,
      );
    }
    this.#lines.push(`} as const;`);
    if (enumeration.bitfield) {
      this.#lines.push(`/** A combination of ${type} bits. */`, `export type ${type} = number;`);
    } else if (enumeration.entries.length === 0) {
      this.#lines.push(`export type ${type} = never;`);
    } else {
      this.#lines.push(`export type ${type} = (typeof ${type})[keyof typeof ${type}];`);
    }

    const newer = enumeration.entries.filter((entry) => entry.since > 1);
    const versionParam = newer.length > 0 ? 'version' : '_version';
    this.#lines.push(
      `/**`,
      enumeration.bitfield
        ? ` * True if \`value\` is a uint made only of ${type} bits (those a \`version\` peer knows, when given).`
        : ` * True if \`value\` is a ${type} entry (one a \`version\` peer knows, when given).`,
      ` */`,
      `export function ${guard}(value: number, ${versionParam}?: number): value is ${type} {`,
    );
    if (enumeration.bitfield) {
      const baseMask = enumeration.entries
        .filter((entry) => entry.since <= 1)
        .reduce((mask, entry) => (mask | entry.value) >>> 0, 0);
      this.#lines.push(`  ${newer.length > 0 ? 'let' : 'const'} mask = ${formatValue(baseMask)};`);
      const bySince = groupBySince(newer);
      for (const [since, entries] of bySince) {
        const mask = entries.reduce((acc, entry) => (acc | entry.value) >>> 0, 0);
        this.#lines.push(
          `  if (version === undefined || version >= ${since}) mask = (mask | ${formatValue(mask)}) >>> 0;`,
        );
      }
      this.#lines.push(
        `  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff && ((value & ~mask) >>> 0) === 0;`,
        `}`,
        '',
      );
      return;
    }
    // Values may repeat under several names: the earliest since wins.
    const sinceByValue = new Map<number, number>();
    for (const entry of enumeration.entries) {
      sinceByValue.set(
        entry.value,
        Math.min(sinceByValue.get(entry.value) ?? Infinity, entry.since),
      );
    }
    const always = [...sinceByValue].filter(([, since]) => since <= 1).map(([value]) => value);
    const later = groupBySince(
      [...sinceByValue]
        .filter(([, since]) => since > 1)
        .map(([value, since]) => ({ value, since })),
    );
    this.#lines.push(`  switch (value) {`);
    if (always.length > 0) {
      this.#lines.push(
        ...always.map((value) => `    case ${formatValue(value)}:`),
        `      return true;`,
      );
    }
    for (const [since, entries] of later) {
      this.#lines.push(
        ...entries.map((entry) => `    case ${formatValue(entry.value)}:`),
        `      return version === undefined || version >= ${since};`,
      );
    }
    this.#lines.push(`    default:`, `      return false;`, `  }`, `}`, '');
  }

  // ---- server ----

  /** Handler parameters for a request (server side), after `resource`. */
  #requestParams(
    iface: Interface,
    message: Message,
  ): { params: string[]; argExprs: string[]; docs: string[] } {
    const allocate = identifierAllocator(['resource']);
    const params: string[] = [];
    const argExprs: string[] = [];
    const docs: string[] = [];
    let index = 0;
    for (const arg of message.args) {
      const name = allocate(arg.name);
      const nullable = arg.allowNull ? ' | null' : '';
      const at = `args[${index}]`;
      let type: string;
      let expr: string;
      switch (arg.type) {
        case 'object': {
          const cls = arg.interface
            ? this.#ref(arg.interface, 'resource')
            : this.#runtime('resource', 'Resource');
          type = `${cls}${nullable}`;
          const helper = this.#runtime('owner', arg.allowNull ? 'ownerOf' : 'requireOwner');
          expr = `${helper}(${at}, ${cls})`;
          break;
        }
        case 'new_id':
          if (arg.interface === null) {
            const interfaceParam = allocate(`${arg.name}_interface`);
            const versionParam = allocate(`${arg.name}_version`);
            params.push(`${interfaceParam}: string`, `${versionParam}: number`);
            argExprs.push(`${at} as string`, `args[${index + 1}] as number`);
            docs.push(
              `@param ${interfaceParam} interface name of the new object`,
              `@param ${versionParam} version of the new object`,
            );
            index += 2;
            type = 'number';
            expr = `args[${index}] as number`;
          } else {
            type = 'number';
            expr = `${at} as number`;
          }
          break;
        default:
          ({ type, expr } = receivedScalar(arg, at));
      }
      params.push(`${name}: ${type}`);
      argExprs.push(expr);
      docs.push(this.#paramDoc(iface, arg, name));
      index += 1;
    }
    return { params, argExprs, docs };
  }

  #paramDoc(iface: Interface, arg: Arg, name: string): string {
    let text = arg.summary ?? '';
    if (arg.type === 'new_id' && arg.interface) {
      text += `${text ? ' ' : ''}(new ${arg.interface} id: create it with ${interfaceNames(arg.interface).resource}.create)`;
    }
    if (arg.type === 'fd') text += `${text ? ' ' : ''}(fd, now owned by the handler)`;
    return `@param ${name} ${text}${this.#enumNote(iface, arg)}`.trimEnd();
  }

  #messageTags(message: Message, extra: string[]): string[] {
    const tags = [...extra];
    if (message.since > 1) tags.push(`@since ${message.since}`);
    if (message.deprecatedSince !== null)
      tags.push(`@deprecated since version ${message.deprecatedSince}`);
    return tags;
  }

  #emitRequestsInterface(iface: Interface): void {
    const names = interfaceNames(iface.name);
    const resource = names.resource;
    this.#lines.push(
      `/** Request handlers of ${iface.name}, implemented by the compositor (destructors optional). */`,
      `export interface ${names.requests} {`,
    );
    for (const message of iface.requests) {
      const { params, docs } = this.#requestParams(iface, message);
      const notes = message.destructor
        ? ['Destructor: the resource is destroyed after this handler returns.']
        : [];
      this.#lines.push(
        ...jsdoc('  ', message.description, {
          notes,
          tags: this.#messageTags(message, [`@param resource the ${iface.name} resource`, ...docs]),
        }),
        `  ${camelCase(message.name)}${message.destructor ? '?' : ''}(${[`resource: ${resource}`, ...params].join(', ')}): void;`,
      );
    }
    this.#lines.push(`}`, '');
  }

  #emitResource(iface: Interface): void {
    const names = interfaceNames(iface.name);
    const cls = names.resource;
    const base = this.#runtime('resource', 'Resource');
    const client = this.#native('NativeClient');
    const display = this.#runtime('server', 'Display');
    const global = this.#runtime('server', 'Global');
    const lines = this.#lines;
    lines.push(
      ...jsdoc('', iface.description, {
        notes: [`Server side of ${iface.name} (version ${iface.version}).`],
      }),
      `export class ${cls} extends ${base} {`,
      `  static readonly interfaceName = ${quote(iface.name)};`,
      `  static readonly version = ${iface.version};`,
      `  #handlers: ${names.requests} | null;`,
      '',
      `  private constructor(client: ${client}, version: number, id: number, handlers: ${names.requests} | null) {`,
      `    super(client, ${quote(iface.name)}, ${iface.version}, version, id);`,
      `    this.#handlers = handlers;`,
      `  }`,
      '',
      `  /**`,
      `   * Creates the resource for a client's new_id (\`id\` 0: a server-allocated id, for an object`,
      `   * sent in an event). \`version\` must lie in 1..${iface.version}.`,
      `   */`,
      `  static create(client: ${client}, version: number, id: number, handlers: ${names.requests}): ${cls} {`,
      `    return new ${cls}(client, version, id, handlers);`,
      `  }`,
      '',
      `  /**`,
      `   * Creates a ${iface.name} global offering \`version\` (1..${iface.version}). For each bind,`,
      `   * \`onBind\` gets the new resource (to send its initial events) and returns its handlers.`,
      `   */`,
      `  static global(display: ${display}, version: number, onBind: (resource: ${cls}) => ${names.requests}): ${global} {`,
      `    return display.createGlobal(${quote(iface.name)}, version, ${iface.version}, (client, boundVersion, id) => {`,
      `      const resource = new ${cls}(client, boundVersion, id, null);`,
      `      resource.#handlers = onBind(resource);`,
      `    });`,
      `  }`,
      '',
      `  /** The handler object given at creation (null until a global's onBind returned). */`,
      `  get handlers(): ${names.requests} | null {`,
      `    return this.#handlers;`,
      `  }`,
    );

    iface.events.forEach((message, opcode) => this.#emitSender(iface, message, opcode));

    if (iface.requests.length > 0) {
      const wire = this.#native('WireValue');
      lines.push(
        '',
        `  protected override dispatchRequest(opcode: number, args: ${wire}[]): void {`,
        `    const handlers = this.#handlers;`,
        `    if (handlers === null) throw new Error(\`${iface.name}@\${this.id}: request before its handlers were set\`);`,
        `    switch (opcode) {`,
      );
      iface.requests.forEach((message, opcode) => {
        const { argExprs } = this.#requestParams(iface, message);
        const call = `handlers.${camelCase(message.name)}${message.destructor ? '?.' : ''}(${['this', ...argExprs].join(', ')});`;
        lines.push(`      case ${opcode}:`);
        if (message.destructor) {
          lines.push(
            `        try {`,
            `          ${call}`,
            `        } finally {`,
            `          this.destroy();`,
            `        }`,
          );
        } else {
          lines.push(`        ${call}`);
        }
        lines.push(`        return;`);
      });
      lines.push(`      default:`, `        super.dispatchRequest(opcode, args);`, `    }`, `  }`);
    }
    lines.push(`}`, '');
  }

  #emitSender(iface: Interface, message: Message, opcode: number): void {
    const allocate = identifierAllocator();
    const params: string[] = [];
    const values: string[] = [];
    const objects: string[] = [];
    const docs: string[] = [];
    for (const arg of message.args) {
      const name = allocate(arg.name);
      const nullable = arg.allowNull ? ' | null' : '';
      let type: string;
      let value = name;
      switch (arg.type) {
        case 'int':
        case 'uint':
          type = this.#enumType(iface, arg) ?? 'number';
          break;
        case 'fixed':
          type = 'number';
          break;
        case 'fd':
          type = 'number';
          break;
        case 'string':
          type = `string${nullable}`;
          break;
        case 'array':
          type = `Uint8Array${nullable}`;
          break;
        case 'object':
        case 'new_id': {
          const cls = arg.interface
            ? this.#ref(arg.interface, 'resource')
            : this.#runtime('resource', 'Resource');
          const argNullable = arg.type === 'object' ? nullable : '';
          type = `${cls}${argNullable}`;
          value = argNullable ? `${name}?.native ?? null` : `${name}.native`;
          objects.push(name);
          break;
        }
      }
      params.push(`${name}: ${type}`);
      values.push(value);
      let doc = arg.summary ?? '';
      if (arg.type === 'new_id') doc += `${doc ? ' ' : ''}(created with id 0 for this client)`;
      if (arg.type === 'fd') doc += `${doc ? ' ' : ''}(fd, borrowed: libwayland dups it)`;
      docs.push(`@param ${name} ${doc}${this.#enumNote(iface, arg)}`.trimEnd());
    }
    const gate = message.since > 1 ? ` || this.version < ${message.since}` : '';
    const lines = this.#lines;
    lines.push(
      '',
      ...jsdoc('  ', message.description, {
        notes: [
          `Sends ${iface.name}.${message.name}. Returns false (sending nothing) when the resource is destroyed${message.since > 1 ? ` or older than version ${message.since}` : ''}.`,
        ],
        tags: this.#messageTags(message, docs),
      }),
      `  send${pascalCase(message.name)}(${params.join(', ')}): boolean {`,
      `    if (!this.alive${gate}) return false;`,
      ...objects.map((name) => `    this.sameClient(${name});`),
      `    this.native.postEvent(${opcode}, [${values.join(', ')}]);`,
      `    return true;`,
      `  }`,
    );
  }

  // ---- client ----

  /** Listener parameters for an event (client side). */
  #eventParams(iface: Interface, message: Message) {
    const allocate = identifierAllocator();
    const params: string[] = [];
    const argExprs: string[] = [];
    const fds: string[] = [];
    const created: { index: number; cls: string }[] = [];
    const docs: string[] = [];
    message.args.forEach((arg, index) => {
      const name = allocate(arg.name);
      const at = `args[${index}]`;
      let type: string;
      let expr: string;
      if (arg.type === 'fd') fds.push(at);
      switch (arg.type) {
        case 'object': {
          // Always nullable: libwayland-client passes NULL for objects the client destroyed.
          const cls = arg.interface
            ? this.#ref(arg.interface, 'proxy')
            : this.#runtime('proxy', 'ClientProxy');
          type = `${cls} | null`;
          expr = `${this.#runtime('owner', 'ownerOf')}(${at}, ${cls})`;
          break;
        }
        case 'new_id': {
          const cls = this.#ref(arg.interface as string, 'proxy');
          type = cls;
          expr = `created${created.length}`;
          created.push({ index, cls });
          break;
        }
        default:
          ({ type, expr } = receivedScalar(arg, at));
      }
      params.push(`${name}: ${type}`);
      argExprs.push(expr);
      let doc = arg.summary ?? '';
      if (arg.type === 'fd') doc += `${doc ? ' ' : ''}(fd, owned by the listener: close it)`;
      if (arg.type === 'object') doc += `${doc ? ' ' : ''}(null if the client destroyed it)`;
      if (arg.type === 'new_id') doc += `${doc ? ' ' : ''}(a new proxy)`;
      docs.push(`@param ${name} ${doc}${this.#enumNote(iface, arg)}`.trimEnd());
    });
    return { params, argExprs, fds, created, docs };
  }

  #emitEventsInterface(iface: Interface): void {
    const names = interfaceNames(iface.name);
    this.#lines.push(
      `/** Event listener of ${iface.name} (set with ${names.proxy}.setListener; every method optional). */`,
      `export interface ${names.events} {`,
    );
    for (const message of iface.events) {
      const { params, docs } = this.#eventParams(iface, message);
      this.#lines.push(
        ...jsdoc('  ', message.description, { tags: this.#messageTags(message, docs) }),
        `  ${camelCase(message.name)}(${params.join(', ')}): void;`,
      );
    }
    this.#lines.push(`}`, '');
  }

  #emitProxy(iface: Interface): void {
    const names = interfaceNames(iface.name);
    const cls = names.proxy;
    const base = this.#runtime('proxy', 'ClientProxy');
    const lines = this.#lines;
    for (const message of [...iface.requests]) {
      if (PROXY_MEMBERS.has(camelCase(message.name))) {
        throw new Error(
          `${this.#protocol.source}: request ${iface.name}.${message.name} shadows a proxy member`,
        );
      }
    }
    lines.push(
      ...jsdoc('', iface.description, {
        notes: [`Client side of ${iface.name} (version ${iface.version}).`],
      }),
      `export class ${cls} extends ${base} {`,
      `  static readonly interfaceName = ${quote(iface.name)};`,
      `  static readonly version = ${iface.version};`,
      `  /** Receives this proxy's events. */`,
      `  listener: Partial<${names.events}> | null = null;`,
      '',
      `  /** Sets (replaces) the event listener; returns this. */`,
      `  setListener(listener: Partial<${names.events}> | null): this {`,
      `    this.listener = listener;`,
      `    return this;`,
      `  }`,
    );
    iface.requests.forEach((message, opcode) => this.#emitRequestMethod(iface, message, opcode));

    if (iface.events.length > 0) {
      const wire = this.#native('WireValue');
      lines.push(
        '',
        `  protected override dispatchEvent(opcode: number, args: ${wire}[]): void {`,
        `    const listener = this.listener;`,
        `    switch (opcode) {`,
      );
      iface.events.forEach((message, opcode) => {
        const { argExprs, fds, created } = this.#eventParams(iface, message);
        const method = camelCase(message.name);
        lines.push(`      case ${opcode}: {`);
        for (const [n, { index, cls: createdClass }] of created.entries()) {
          const nativeProxy = this.#native('NativeProxy');
          lines.push(
            `        const created${n} = new ${createdClass}(args[${index}] as ${nativeProxy});`,
          );
        }
        if (fds.length > 0) {
          const close = this.#runtime('proxy', 'closeUnhandledFds');
          lines.push(
            `        if (listener?.${method}) listener.${method}(${argExprs.join(', ')});`,
            `        else ${close}(${fds.join(', ')});`,
          );
        } else {
          lines.push(`        listener?.${method}?.(${argExprs.join(', ')});`);
        }
        lines.push(`        return;`, `      }`);
      });
      lines.push(`      default:`, `        super.dispatchEvent(opcode, args);`, `    }`, `  }`);
    }
    lines.push(`}`, '');
  }

  #emitRequestMethod(iface: Interface, message: Message, opcode: number): void {
    const allocate = identifierAllocator();
    const params: string[] = [];
    const values: string[] = [];
    const docs: string[] = [];
    let generic = '';
    let result = 'void';
    let create: { iface: string; version: string; cls: string | null } | null = null;
    for (const arg of message.args) {
      const nullable = arg.allowNull ? ' | null' : '';
      if (arg.type === 'new_id') {
        if (arg.interface === null) {
          const proxyClass = this.#runtime('proxy', 'ProxyClass', true);
          const proxyBase = this.#runtime('proxy', 'ClientProxy');
          const classParam = allocate('proxy_class');
          const versionParam = allocate('version');
          generic = `<P extends ${proxyBase}>`;
          params.push(`${classParam}: ${proxyClass}<P>`, `${versionParam}: number`);
          values.push(`${classParam}.interfaceName`, versionParam, 'null');
          docs.push(
            `@param ${classParam} the generated proxy class of the interface to create`,
            `@param ${versionParam} the version to create it with`,
          );
          result = 'P';
          create = { iface: `${classParam}.interfaceName`, version: versionParam, cls: classParam };
        } else {
          const proxy = this.#ref(arg.interface, 'proxy');
          values.push('null');
          result = proxy;
          create = { iface: quote(arg.interface), version: 'this.version', cls: proxy };
        }
        continue;
      }
      const name = allocate(arg.name);
      let type: string;
      let value = name;
      switch (arg.type) {
        case 'int':
        case 'uint':
          type = this.#enumType(iface, arg) ?? 'number';
          break;
        case 'fixed':
        case 'fd':
          type = 'number';
          break;
        case 'string':
          type = `string${nullable}`;
          break;
        case 'array':
          type = `Uint8Array${nullable}`;
          break;
        case 'object': {
          const cls = arg.interface
            ? this.#ref(arg.interface, 'proxy')
            : this.#runtime('proxy', 'ClientProxy');
          type = `${cls}${nullable}`;
          value = nullable ? `${name}?.native ?? null` : `${name}.native`;
          break;
        }
      }
      params.push(`${name}: ${type}`);
      values.push(value);
      let doc = arg.summary ?? '';
      if (arg.type === 'fd') doc += `${doc ? ' ' : ''}(fd, borrowed: libwayland dups it)`;
      docs.push(`@param ${name} ${doc}${this.#enumNote(iface, arg)}`.trimEnd());
    }
    const notes: string[] = [];
    if (message.destructor) notes.push('Destructor: destroys this proxy after sending.');
    if (message.since > 1) notes.push(`Throws when the proxy's version is below ${message.since}.`);
    const destroy = message.destructor ? 'true' : 'false';
    const lines = this.#lines;
    lines.push(
      '',
      ...jsdoc('  ', message.description, {
        notes,
        tags: this.#messageTags(
          message,
          result === 'void' ? docs : [...docs, `@returns the new proxy`],
        ),
      }),
      `  ${camelCase(message.name)}${generic}(${params.join(', ')}): ${result} {`,
      `    this.checkRequest(${quote(message.name)}, ${message.since});`,
    );
    if (create) {
      lines.push(
        `    const created = this.marshalConstructor(${opcode}, [${values.join(', ')}], ${create.iface}, ${create.version}, ${destroy});`,
        `    return new ${create.cls}(created);`,
      );
    } else {
      lines.push(`    this.marshal(${opcode}, [${values.join(', ')}], ${destroy});`);
    }
    lines.push(`  }`);
  }
}

function formatValue(value: number): string {
  return value > 0xffff ? `0x${value.toString(16)}` : String(value);
}

function groupBySince<T extends { since: number }>(items: T[]): [number, T[]][] {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    let group = groups.get(item.since);
    if (!group) groups.set(item.since, (group = []));
    group.push(item);
  }
  return [...groups].sort(([a], [b]) => a - b);
}

/**
 * Generates one module per protocol plus `index.ts` re-exporting them all (generated names are
 * checked unique across the set). `protocols` must have unique interface names (selectProtocols).
 */
export function generateProtocols(
  protocols: readonly Protocol[],
  options: GenerateOptions,
): GeneratedFile[] {
  const catalog = buildCatalog(protocols);
  const files: GeneratedFile[] = protocols.map((protocol) => ({
    fileName: `${protocol.name}.ts`,
    protocol: protocol.name,
    text: new ProtocolEmitter(protocol, catalog, options).emit(),
  }));
  const index = [
    "// Generated by guestfb's protocol scanner. Do not edit: the build regenerates it.",
    '// Every generated protocol module; generated names are unique across all of them.',
    ...protocols.map((protocol) => `export * from ${quote(`./${protocol.name}.js`)};`),
    '',
  ].join('\n');
  files.push({ fileName: 'index.ts', protocol: null, text: index });
  return files;
}
