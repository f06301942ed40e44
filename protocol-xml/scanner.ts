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
import type { Entry, Enum, Interface, Message, Protocol } from './model.js';
import {
  EmitContext,
  buildCatalog,
  jsdoc,
  messageSignature,
  quote,
  referencedInterfaces,
  type Catalog,
  type GenerateOptions,
} from './emit-context.js';
import { emitEventsInterface, emitProxy } from './emit-client.js';
import { emitRequestsInterface, emitResource } from './emit-server.js';
import { entryKey, enumNames, interfaceNames } from './names.js';

export { parseProtocol } from './model.js';
export type { Protocol } from './model.js';
export type { GenerateOptions } from './emit-context.js';
export { messageSignature } from './emit-context.js';
export { camelCase, entryKey, enumNames, interfaceNames, pascalCase } from './names.js';

export interface GeneratedFile {
  /** File name inside the output folder, e.g. `xdg_shell.ts`. */
  fileName: string;
  /** The protocol it came from (null for index.ts). */
  protocol: string | null;
  text: string;
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

// ---------------------------------------------------------------------------------------------
// Emission: one module per protocol. The interface specs and enums are emitted here, the server
// side in emit-server.ts, the client side in emit-client.ts.
// ---------------------------------------------------------------------------------------------

/** Emits one protocol's module. */
function emitProtocol(protocol: Protocol, catalog: Catalog, options: GenerateOptions): string {
  const ctx = new EmitContext(protocol, catalog, options);
  const body: string[] = [];
  const swap = (target: string[]) => {
    const saved = ctx.lines.splice(0);
    ctx.lines.push(...target);
    return saved;
  };
  swap(body);

  for (const iface of protocol.interfaces) {
    emitSpec(ctx, iface);
    for (const enumeration of iface.enums) emitEnum(ctx, iface, enumeration);
    emitRequestsInterface(ctx, iface);
    emitResource(ctx, iface);
    emitEventsInterface(ctx, iface);
    emitProxy(ctx, iface);
  }
  const register = ctx.runtime('interfaces', 'registerInterfaces');
  const specs = protocol.interfaces.map((iface) => interfaceNames(iface.name).spec);
  ctx.lines.push(`${register}([${specs.join(', ')}]);`);
  const emitted = swap([]);

  // Load every protocol this one references, so its specs are registered before first use.
  for (const name of referencedInterfaces(protocol)) {
    const owner = ctx.catalog.interfaceOwner.get(name);
    if (owner && owner !== protocol) ctx.out.load(`./${owner.name}.js`);
  }

  const header = [
    `// Generated by guestfb's protocol scanner from the ${protocol.name} protocol`,
    `// (${protocol.source.split('/').slice(-1)[0]}). Do not edit: the build regenerates it.`,
  ];
  if (protocol.copyright) {
    header.push('//', ...protocol.copyright.split('\n').map((line) => `// ${line}`.trimEnd()));
  }
  const moduleDoc = jsdoc('', protocol.description, { notes: [`Protocol ${protocol.name}.`] });
  return [...header, '', ...ctx.out.importLines(), '', ...moduleDoc, '', ...emitted, ''].join('\n');
}

function emitSpec(ctx: EmitContext, iface: Interface): void {
  const specType = ctx.native('InterfaceSpec');
  const names = interfaceNames(iface.name);
  const messages = (list: Message[]) =>
    list.map((message) => {
      const { signature, types } = messageSignature(message);
      const typeList = types.map((type) => (type === null ? 'null' : quote(type))).join(', ');
      return `    { name: ${quote(message.name)}, signature: ${quote(signature)}, types: [${typeList}] },`;
    });
  const list = (key: string, messages_: Message[]) =>
    messages_.length === 0 ? [`  ${key}: [],`] : [`  ${key}: [`, ...messages(messages_), `  ],`];
  ctx.lines.push(
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

function emitEnum(ctx: EmitContext, iface: Interface, enumeration: Enum): void {
  const { type, guard } = enumNames(iface.name, enumeration.name);
  const tags = [];
  if (enumeration.since > 1) tags.push(`@since ${enumeration.since}`);
  ctx.lines.push(
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
    ctx.lines.push(...entryDoc(entry), `  ${entryKey(entry.name)}: ${formatValue(entry.value)},`);
  }
  ctx.lines.push(`} as const;`);
  if (enumeration.bitfield) {
    ctx.lines.push(`/** A combination of ${type} bits. */`, `export type ${type} = number;`);
  } else if (enumeration.entries.length === 0) {
    ctx.lines.push(`export type ${type} = never;`);
  } else {
    ctx.lines.push(`export type ${type} = (typeof ${type})[keyof typeof ${type}];`);
  }

  const newer = enumeration.entries.filter((entry) => entry.since > 1);
  const versionParam = newer.length > 0 ? 'version' : '_version';
  ctx.lines.push(
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
    ctx.lines.push(`  ${newer.length > 0 ? 'let' : 'const'} mask = ${formatValue(baseMask)};`);
    const bySince = groupBySince(newer);
    for (const [since, entries] of bySince) {
      const mask = entries.reduce((acc, entry) => (acc | entry.value) >>> 0, 0);
      ctx.lines.push(
        `  if (version === undefined || version >= ${since}) mask = (mask | ${formatValue(mask)}) >>> 0;`,
      );
    }
    ctx.lines.push(
      `  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff && ((value & ~mask) >>> 0) === 0;`,
      `}`,
      '',
    );
    return;
  }
  // Values may repeat under several names: the earliest since wins.
  const sinceByValue = new Map<number, number>();
  for (const entry of enumeration.entries) {
    sinceByValue.set(entry.value, Math.min(sinceByValue.get(entry.value) ?? Infinity, entry.since));
  }
  const always = [...sinceByValue].filter(([, since]) => since <= 1).map(([value]) => value);
  const later = groupBySince(
    [...sinceByValue].filter(([, since]) => since > 1).map(([value, since]) => ({ value, since })),
  );
  ctx.lines.push(`  switch (value) {`);
  if (always.length > 0) {
    ctx.lines.push(
      ...always.map((value) => `    case ${formatValue(value)}:`),
      `      return true;`,
    );
  }
  for (const [since, entries] of later) {
    ctx.lines.push(
      ...entries.map((entry) => `    case ${formatValue(entry.value)}:`),
      `      return version === undefined || version >= ${since};`,
    );
  }
  ctx.lines.push(`    default:`, `      return false;`, `  }`, `}`, '');
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
    text: emitProtocol(protocol, catalog, options),
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
