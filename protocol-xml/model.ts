/**
 * The protocol model the scanner builds from Wayland protocol XML (see wayland.dtd), and the
 * parser that builds it. Parsing is strict: anything libwayland's own scanner would reject is an
 * Error naming the file and element, so a broken XML fails the build instead of generating junk.
 */
import { XMLParser } from 'fast-xml-parser';

export type ArgType = 'int' | 'uint' | 'fixed' | 'string' | 'object' | 'new_id' | 'array' | 'fd';

export interface Description {
  summary: string | null;
  /** The element text with common indentation removed, or null when empty. */
  text: string | null;
}

export interface Arg {
  name: string;
  type: ArgType;
  /** For object/new_id arguments: the interface name, or null when untyped. */
  interface: string | null;
  allowNull: boolean;
  /** `enum="name"` or `enum="interface.name"` as written, or null. */
  enum: string | null;
  summary: string | null;
}

export interface Message {
  name: string;
  /** True for type="destructor". */
  destructor: boolean;
  since: number;
  deprecatedSince: number | null;
  description: Description | null;
  args: Arg[];
}

export interface Entry {
  name: string;
  value: number;
  summary: string | null;
  since: number;
  deprecatedSince: number | null;
  description: Description | null;
}

export interface Enum {
  name: string;
  since: number;
  bitfield: boolean;
  description: Description | null;
  entries: Entry[];
}

export interface Interface {
  name: string;
  version: number;
  description: Description | null;
  requests: Message[];
  events: Message[];
  enums: Enum[];
}

export interface Protocol {
  name: string;
  /** Where it was read from (for messages only). */
  source: string;
  copyright: string | null;
  description: Description | null;
  interfaces: Interface[];
}

const ARG_TYPES: ReadonlySet<string> = new Set([
  'int',
  'uint',
  'fixed',
  'string',
  'object',
  'new_id',
  'array',
  'fd',
]);
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENUM_REF = /^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$/;
const LISTS = new Set(['interface', 'request', 'event', 'arg', 'enum', 'entry']);

type XmlNode = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  textNodeName: '#text',
  alwaysCreateTextNode: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  isArray: (tagName) => LISTS.has(tagName),
});

class XmlError extends Error {
  constructor(source: string, where: string, problem: string) {
    super(`${source}: ${where}: ${problem}`);
    this.name = 'ProtocolXmlError';
  }
}

/** Removes the indentation shared by all lines (tabs count as 8 columns) and blank edges. */
export function dedent(text: string): string | null {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const expanded = lines.map((line) => line.replace(/\t/g, '        ').replace(/\s+$/, ''));
  while (expanded.length > 0 && expanded[0] === '') expanded.shift();
  while (expanded.length > 0 && expanded[expanded.length - 1] === '') expanded.pop();
  if (expanded.length === 0) return null;
  let indent = Infinity;
  for (const line of expanded) {
    if (line === '') continue;
    indent = Math.min(indent, line.length - line.trimStart().length);
  }
  return expanded.map((line) => line.slice(indent)).join('\n');
}

function children(node: XmlNode, tag: string): XmlNode[] {
  const value = node[tag];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]) as XmlNode[];
}

function child(node: XmlNode, tag: string): XmlNode | null {
  const value = node[tag];
  if (value === undefined) return null;
  return (Array.isArray(value) ? value[0] : value) as XmlNode;
}

function attr(node: XmlNode, name: string): string | null {
  const value = node[`@_${name}`];
  return typeof value === 'string' ? value : null;
}

function text(node: XmlNode): string {
  const value = node['#text'];
  return typeof value === 'string' ? value : '';
}

/** Parses the protocol XML text into a checked model. */
export function parseProtocol(xml: string, source = '<xml>'): Protocol {
  let document: XmlNode;
  try {
    document = parser.parse(xml, true) as XmlNode;
  } catch (error) {
    throw new XmlError(source, 'document', `not well-formed XML: ${String(error)}`);
  }
  const root = child(document, 'protocol');
  if (!root) throw new XmlError(source, 'document', 'no <protocol> element');

  const nameOf = (node: XmlNode, where: string): string => {
    const name = attr(node, 'name');
    if (name === null || !NAME.test(name)) {
      throw new XmlError(source, where, `missing or invalid name ${JSON.stringify(name)}`);
    }
    return name;
  };
  const positive = (node: XmlNode, key: string, where: string, fallback: number | null) => {
    const raw = attr(node, key);
    if (raw === null) return fallback;
    if (!/^[0-9]+$/.test(raw) || Number(raw) < 1 || Number(raw) > 0xffffffff) {
      throw new XmlError(source, where, `invalid ${key}="${raw}"`);
    }
    return Number(raw);
  };
  const descriptionOf = (node: XmlNode): Description | null => {
    const element = child(node, 'description');
    if (!element) return null;
    return { summary: attr(element, 'summary'), text: dedent(text(element)) };
  };

  const protocolName = nameOf(root, '<protocol>');
  const copyrightNode = child(root, 'copyright');
  const interfaces: Interface[] = [];
  const seen = new Set<string>();

  for (const node of children(root, 'interface')) {
    const name = nameOf(node, `<interface> in ${protocolName}`);
    const where = `interface ${name}`;
    if (seen.has(name)) throw new XmlError(source, where, 'defined twice');
    seen.add(name);
    const version = positive(node, 'version', where, null);
    if (version === null) throw new XmlError(source, where, 'missing version');

    const messages = (tag: 'request' | 'event'): Message[] => {
      const names = new Set<string>();
      let lastSince = 1;
      return children(node, tag).map((element) => {
        const messageName = nameOf(element, `<${tag}> of ${name}`);
        const at = `${name}.${messageName}`;
        if (names.has(messageName)) throw new XmlError(source, at, `${tag} defined twice`);
        names.add(messageName);
        const type = attr(element, 'type');
        if (type !== null && type !== 'destructor') {
          throw new XmlError(source, at, `unknown ${tag} type "${type}"`);
        }
        const since = positive(element, 'since', at, 1) as number;
        if (since > version) throw new XmlError(source, at, `since ${since} > version ${version}`);
        if (since < lastSince) throw new XmlError(source, at, 'since goes down (opcode order)');
        lastSince = since;
        const argNames = new Set<string>();
        const args = children(element, 'arg').map((argNode): Arg => {
          const argName = nameOf(argNode, `<arg> of ${at}`);
          const argAt = `${at}(${argName})`;
          if (argNames.has(argName)) throw new XmlError(source, argAt, 'argument defined twice');
          argNames.add(argName);
          const argType = attr(argNode, 'type');
          if (argType === null || !ARG_TYPES.has(argType)) {
            throw new XmlError(source, argAt, `invalid type ${JSON.stringify(argType)}`);
          }
          const iface = attr(argNode, 'interface');
          if (
            iface !== null &&
            (!NAME.test(iface) || (argType !== 'object' && argType !== 'new_id'))
          ) {
            throw new XmlError(source, argAt, `interface="${iface}" not valid here`);
          }
          const allowNullRaw = attr(argNode, 'allow-null');
          if (allowNullRaw !== null && allowNullRaw !== 'true' && allowNullRaw !== 'false') {
            throw new XmlError(source, argAt, `allow-null="${allowNullRaw}"`);
          }
          const allowNull = allowNullRaw === 'true';
          if (allowNull && !['object', 'string', 'array', 'new_id'].includes(argType)) {
            throw new XmlError(source, argAt, 'allow-null on a type that cannot be null');
          }
          const enumRef = attr(argNode, 'enum');
          if (enumRef !== null && (!ENUM_REF.test(enumRef) || !['int', 'uint'].includes(argType))) {
            throw new XmlError(source, argAt, `enum="${enumRef}" not valid here`);
          }
          return {
            name: argName,
            type: argType as ArgType,
            interface: iface,
            allowNull,
            enum: enumRef,
            summary: attr(argNode, 'summary'),
          };
        });
        const newIds = args.filter((arg) => arg.type === 'new_id');
        if (newIds.length > 1) throw new XmlError(source, at, 'more than one new_id argument');
        if (tag === 'event' && newIds.some((arg) => arg.interface === null)) {
          throw new XmlError(source, at, 'an event cannot carry an untyped new_id');
        }
        return {
          name: messageName,
          destructor: type === 'destructor',
          since,
          deprecatedSince: positive(element, 'deprecated-since', at, null),
          description: descriptionOf(element),
          args,
        };
      });
    };

    const enumNames = new Set<string>();
    const enums = children(node, 'enum').map((element): Enum => {
      const enumName = nameOf(element, `<enum> of ${name}`);
      const at = `${name}.${enumName}`;
      if (enumNames.has(enumName)) throw new XmlError(source, at, 'enum defined twice');
      enumNames.add(enumName);
      const bitfieldRaw = attr(element, 'bitfield');
      if (bitfieldRaw !== null && bitfieldRaw !== 'true' && bitfieldRaw !== 'false') {
        throw new XmlError(source, at, `bitfield="${bitfieldRaw}"`);
      }
      const entryNames = new Set<string>();
      const entries = children(element, 'entry').map((entryNode): Entry => {
        const entryName = attr(entryNode, 'name');
        if (entryName === null || !/^[A-Za-z0-9_]+$/.test(entryName)) {
          throw new XmlError(source, at, `entry with invalid name ${JSON.stringify(entryName)}`);
        }
        if (entryNames.has(entryName)) throw new XmlError(source, at, `entry ${entryName} twice`);
        entryNames.add(entryName);
        const rawValue = attr(entryNode, 'value') ?? '';
        if (!/^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/.test(rawValue) || Number(rawValue) > 0xffffffff) {
          throw new XmlError(source, `${at}.${entryName}`, `invalid value "${rawValue}"`);
        }
        return {
          name: entryName,
          value: Number(rawValue),
          summary: attr(entryNode, 'summary'),
          since: positive(entryNode, 'since', `${at}.${entryName}`, 1) as number,
          deprecatedSince: positive(entryNode, 'deprecated-since', `${at}.${entryName}`, null),
          description: descriptionOf(entryNode),
        };
      });
      return {
        name: enumName,
        since: positive(element, 'since', at, 1) as number,
        bitfield: bitfieldRaw === 'true',
        description: descriptionOf(element),
        entries,
      };
    });

    interfaces.push({
      name,
      version,
      description: descriptionOf(node),
      requests: messages('request'),
      events: messages('event'),
      enums,
    });
  }

  return {
    name: protocolName,
    source,
    copyright: copyrightNode ? dedent(text(copyrightNode)) : null,
    description: descriptionOf(root),
    interfaces,
  };
}
