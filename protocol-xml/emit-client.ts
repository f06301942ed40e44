/**
 * The client side of an interface: `XEvents` (the listener interface) and `XProxy` (typed
 * request methods, event dispatch).
 */
import type { Interface, Message } from './model.js';
import { PROXY_MEMBERS, camelCase, identifierAllocator, interfaceNames } from './names.js';
import { jsdoc, quote, receivedScalar, type EmitContext } from './emit-context.js';

/** Listener parameters for an event (client side). */
function eventParams(ctx: EmitContext, iface: Interface, message: Message) {
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
          ? ctx.ref(arg.interface, 'proxy')
          : ctx.runtime('proxy', 'ClientProxy');
        type = `${cls} | null`;
        expr = `${ctx.runtime('owner', 'ownerOf')}(${at}, ${cls})`;
        break;
      }
      case 'new_id': {
        const cls = ctx.ref(arg.interface as string, 'proxy');
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
    docs.push(`@param ${name} ${doc}${ctx.enumNote(iface, arg)}`.trimEnd());
  });
  return { params, argExprs, fds, created, docs };
}

export function emitEventsInterface(ctx: EmitContext, iface: Interface): void {
  const names = interfaceNames(iface.name);
  ctx.lines.push(
    `/** Event listener of ${iface.name} (set with ${names.proxy}.setListener; every method optional). */`,
    `export interface ${names.events} {`,
  );
  for (const message of iface.events) {
    const { params, docs } = eventParams(ctx, iface, message);
    ctx.lines.push(
      ...jsdoc('  ', message.description, { tags: ctx.messageTags(message, docs) }),
      `  ${camelCase(message.name)}(${params.join(', ')}): void;`,
    );
  }
  ctx.lines.push(`}`, '');
}

export function emitProxy(ctx: EmitContext, iface: Interface): void {
  const names = interfaceNames(iface.name);
  const cls = names.proxy;
  const base = ctx.runtime('proxy', 'ClientProxy');
  const lines = ctx.lines;
  for (const message of [...iface.requests]) {
    if (PROXY_MEMBERS.has(camelCase(message.name))) {
      throw new Error(
        `${ctx.protocol.source}: request ${iface.name}.${message.name} shadows a proxy member`,
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
  iface.requests.forEach((message, opcode) => emitRequestMethod(ctx, iface, message, opcode));

  if (iface.events.length > 0) {
    const wire = ctx.native('WireValue');
    lines.push(
      '',
      `  protected override dispatchEvent(opcode: number, args: ${wire}[]): void {`,
      `    const listener = this.listener;`,
      `    switch (opcode) {`,
    );
    iface.events.forEach((message, opcode) => {
      const { argExprs, fds, created } = eventParams(ctx, iface, message);
      const method = camelCase(message.name);
      lines.push(`      case ${opcode}: {`);
      for (const [n, { index, cls: createdClass }] of created.entries()) {
        const nativeProxy = ctx.native('NativeProxy');
        lines.push(
          `        const created${n} = new ${createdClass}(args[${index}] as ${nativeProxy});`,
        );
      }
      if (fds.length > 0) {
        const close = ctx.runtime('proxy', 'closeUnhandledFds');
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

function emitRequestMethod(
  ctx: EmitContext,
  iface: Interface,
  message: Message,
  opcode: number,
): void {
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
        const proxyClass = ctx.runtime('proxy', 'ProxyClass', true);
        const proxyBase = ctx.runtime('proxy', 'ClientProxy');
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
        const proxy = ctx.ref(arg.interface, 'proxy');
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
        type = ctx.enumType(iface, arg) ?? 'number';
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
          ? ctx.ref(arg.interface, 'proxy')
          : ctx.runtime('proxy', 'ClientProxy');
        type = `${cls}${nullable}`;
        value = nullable ? `${name}?.native ?? null` : `${name}.native`;
        break;
      }
    }
    params.push(`${name}: ${type}`);
    values.push(value);
    let doc = arg.summary ?? '';
    if (arg.type === 'fd') doc += `${doc ? ' ' : ''}(fd, borrowed: libwayland dups it)`;
    docs.push(`@param ${name} ${doc}${ctx.enumNote(iface, arg)}`.trimEnd());
  }
  const notes: string[] = [];
  if (message.destructor) notes.push('Destructor: destroys this proxy after sending.');
  if (message.since > 1) notes.push(`Throws when the proxy's version is below ${message.since}.`);
  const destroy = message.destructor ? 'true' : 'false';
  const lines = ctx.lines;
  lines.push(
    '',
    ...jsdoc('  ', message.description, {
      notes,
      tags: ctx.messageTags(
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
