/**
 * The server side of an interface: `XRequests` (the handler interface the compositor
 * implements) and `XResource` (typed event senders, `create`, `global`, request dispatch).
 */
import type { Arg, Interface, Message } from './model.js';
import { camelCase, identifierAllocator, interfaceNames, pascalCase } from './names.js';
import { jsdoc, quote, receivedScalar, type EmitContext } from './emit-context.js';

/** Handler parameters for a request (server side), after `resource`. */
function requestParams(
  ctx: EmitContext,
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
          ? ctx.ref(arg.interface, 'resource')
          : ctx.runtime('resource', 'Resource');
        type = `${cls}${nullable}`;
        const helper = ctx.runtime('owner', arg.allowNull ? 'ownerOf' : 'requireOwner');
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
    docs.push(paramDoc(ctx, iface, arg, name));
    index += 1;
  }
  return { params, argExprs, docs };
}

function paramDoc(ctx: EmitContext, iface: Interface, arg: Arg, name: string): string {
  let text = arg.summary ?? '';
  if (arg.type === 'new_id' && arg.interface) {
    text += `${text ? ' ' : ''}(new ${arg.interface} id: create it with ${interfaceNames(arg.interface).resource}.create)`;
  }
  if (arg.type === 'fd') text += `${text ? ' ' : ''}(fd, now owned by the handler)`;
  return `@param ${name} ${text}${ctx.enumNote(iface, arg)}`.trimEnd();
}

export function emitRequestsInterface(ctx: EmitContext, iface: Interface): void {
  const names = interfaceNames(iface.name);
  const resource = names.resource;
  ctx.lines.push(
    `/** Request handlers of ${iface.name}, implemented by the compositor (destructors optional). */`,
    `export interface ${names.requests} {`,
  );
  for (const message of iface.requests) {
    const { params, docs } = requestParams(ctx, iface, message);
    const notes = message.destructor
      ? ['Destructor: the resource is destroyed after this handler returns.']
      : [];
    ctx.lines.push(
      ...jsdoc('  ', message.description, {
        notes,
        tags: ctx.messageTags(message, [`@param resource the ${iface.name} resource`, ...docs]),
      }),
      `  ${camelCase(message.name)}${message.destructor ? '?' : ''}(${[`resource: ${resource}`, ...params].join(', ')}): void;`,
    );
  }
  ctx.lines.push(`}`, '');
}

export function emitResource(ctx: EmitContext, iface: Interface): void {
  const names = interfaceNames(iface.name);
  const cls = names.resource;
  const base = ctx.runtime('resource', 'Resource');
  const client = ctx.native('NativeClient');
  const display = ctx.runtime('server', 'Display');
  const global = ctx.runtime('server', 'Global');
  const lines = ctx.lines;
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

  iface.events.forEach((message, opcode) => emitSender(ctx, iface, message, opcode));

  if (iface.requests.length > 0) {
    const wire = ctx.native('WireValue');
    lines.push(
      '',
      `  protected override dispatchRequest(opcode: number, args: ${wire}[]): void {`,
      `    const handlers = this.#handlers;`,
      `    if (handlers === null) throw new Error(\`${iface.name}@\${this.id}: request before its handlers were set\`);`,
      `    switch (opcode) {`,
    );
    iface.requests.forEach((message, opcode) => {
      const { argExprs } = requestParams(ctx, iface, message);
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

function emitSender(ctx: EmitContext, iface: Interface, message: Message, opcode: number): void {
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
        type = ctx.enumType(iface, arg) ?? 'number';
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
          ? ctx.ref(arg.interface, 'resource')
          : ctx.runtime('resource', 'Resource');
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
    docs.push(`@param ${name} ${doc}${ctx.enumNote(iface, arg)}`.trimEnd());
  }
  const gate = message.since > 1 ? ` || this.version < ${message.since}` : '';
  const lines = ctx.lines;
  lines.push(
    '',
    ...jsdoc('  ', message.description, {
      notes: [
        `Sends ${iface.name}.${message.name}. Returns false (sending nothing) when the resource is destroyed${message.since > 1 ? ` or older than version ${message.since}` : ''}.`,
      ],
      tags: ctx.messageTags(message, docs),
    }),
    `  send${pascalCase(message.name)}(${params.join(', ')}): boolean {`,
    `    if (!this.alive${gate}) return false;`,
    ...objects.map((name) => `    this.sameClient(${name});`),
    `    this.native.postEvent(${opcode}, [${values.join(', ')}]);`,
    `    return true;`,
    `  }`,
  );
}
