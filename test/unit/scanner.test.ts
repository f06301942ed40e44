import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { defaultXmlFiles, repositoryRoot, run } from '../../protocol-xml/generate.js';
import {
  generateProtocols,
  messageSignature,
  parseProtocol,
  selectProtocols,
  type Protocol,
} from '../../protocol-xml/scanner.js';
import {
  WlShmFormat,
  isWlOutputMode,
  isWlShmFormat,
  wlRegistryInterface,
  wlSurfaceInterface,
} from '../../build/protocols/wayland.js';
import { XdgToplevelState, isXdgToplevelState } from '../../build/protocols/xdg_shell.js';

const options = { runtimeModule: '../runtime', nativeModule: '../native/index.js' };

function readWayland(): Protocol {
  const file = defaultXmlFiles().find((path) => path.endsWith('/wayland.xml'));
  assert.ok(file, 'wayland.xml located with pkg-config');
  return parseProtocol(readFileSync(file, 'utf8'), file);
}

/** Asserts that `text` contains the given lines, consecutively. */
function contains(text: string, ...lines: string[]): void {
  const snippet = lines.join('\n');
  assert.ok(text.includes(snippet), `generated code lacks:\n${snippet}`);
}

function generatedText(protocols: Protocol[], name: string): string {
  const file = generateProtocols(protocols, options).find((f) => f.protocol === name);
  assert.ok(file, `generated ${name}`);
  return file.text;
}

/** A small protocol exercising the corners: since gating, bitfields, reserved names, docs. */
const EDGE_XML_FILE = path.join(repositoryRoot(), 'protocol-xml/fixtures/edge_test_v1.xml');

test('wl_surface requests get libwayland signatures, types and since prefixes', () => {
  const wayland = readWayland();
  const surface = wayland.interfaces.find((iface) => iface.name === 'wl_surface');
  assert.ok(surface);
  const attach = surface.requests.find((message) => message.name === 'attach');
  assert.ok(attach);
  assert.deepEqual(messageSignature(attach), {
    signature: '?oii',
    types: ['wl_buffer', null, null],
  });
  const damageBuffer = surface.requests.find((message) => message.name === 'damage_buffer');
  assert.ok(damageBuffer);
  assert.equal(messageSignature(damageBuffer).signature, '4iiii');
  assert.equal(surface.requests.find((m) => m.name === 'destroy')?.destructor, true);

  // The compiled generated module carries the same tables, opcode order as in the XML.
  assert.deepEqual(wlSurfaceInterface.requests[1], {
    name: 'attach',
    signature: '?oii',
    types: ['wl_buffer', null, null],
  });
  assert.deepEqual(
    wlSurfaceInterface.requests.map((message) => message.name),
    surface.requests.map((message) => message.name),
  );
  assert.equal(wlSurfaceInterface.version, surface.version);
  // Untyped new_id expands to interface name + version + id, as wayland-scanner does.
  assert.deepEqual(wlRegistryInterface.requests[0], {
    name: 'bind',
    signature: 'usun',
    types: [null, null, null, null],
  });
});

test('generated TypeScript signatures for both sides of wl_surface', () => {
  const text = generatedText([readWayland()], 'wayland');
  // Client proxy: typed request, since gating for damage_buffer.
  contains(text, '\n  attach(buffer: WlBufferProxy | null, x: number, y: number): void {\n');
  contains(
    text,
    'damageBuffer(x: number, y: number, width: number, height: number): void {',
    "    this.checkRequest('damage_buffer', 4);",
  );
  // new_id request returns the new typed proxy; a destructor destroys the proxy.
  contains(text, '\n  frame(): WlCallbackProxy {\n');
  contains(text, 'this.marshal(0, [], true);');
  // Server: handler interface with the resource first, decoded object arguments.
  contains(
    text,
    '\n  attach(resource: WlSurfaceResource, buffer: WlBufferResource | null, x: number, y: number): void;\n',
  );
  contains(text, 'handlers.attach(this, ownerOf(args[0], WlBufferResource), args[1] as number');
  // Event senders gate on since: wl_output.done is version 2.
  contains(text, 'sendDone(): boolean {', '    if (!this.alive || this.version < 2) return false;');
  // Client listener for events with fds closes them when nobody listens (wl_keyboard.keymap).
  contains(text, 'if (listener?.keymap) listener.keymap(');
  contains(text, 'else closeUnhandledFds(args[1]);');
  // Typed enum argument on the sending side, plain number on the receiving side.
  contains(
    text,
    'createBuffer(offset: number, width: number, height: number, stride: number, format: WlShmFormat): WlBufferProxy',
  );
  contains(
    text,
    'createBuffer(resource: WlShmPoolResource, id: number, offset: number, width: number, height: number, stride: number, format: number): void;',
  );
});

test('doc comments are carried over from the XML', () => {
  const text = generatedText([readWayland()], 'wayland');
  assert.match(
    text,
    /\/\*\*\n \* an onscreen surface\n \*\n \* Server side of wl_surface \(version \d+\)\.\n \*\n \* A surface is a rectangular area/,
  );
  contains(text, '\n   * set the surface contents\n');
  contains(text, '\n   * @param buffer buffer of surface contents\n');
  contains(text, '\n   * @since 4\n');
  contains(
    text,
    '  /** 32-bit ARGB format, [31:0] A:R:G:B 8:8:8:8 little endian */',
    '  argb8888: 0,',
  );
});

test('enum validators: values, since gating and bitfield masks', () => {
  assert.equal(isWlShmFormat(WlShmFormat.argb8888), true);
  assert.equal(isWlShmFormat(0x34324241), true); // ABGR8888 fourcc
  assert.equal(isWlShmFormat(0x34325258), false); // XRGB8888 is 1 in wl_shm, not its fourcc
  assert.equal(isWlShmFormat(0x12345678), false);
  assert.equal(isWlShmFormat(1.5), false);
  assert.equal(isXdgToplevelState(XdgToplevelState.activated, 1), true);
  assert.equal(isXdgToplevelState(XdgToplevelState.tiled_left), true);
  assert.equal(isXdgToplevelState(XdgToplevelState.tiled_left, 1), false);
  assert.equal(isXdgToplevelState(XdgToplevelState.tiled_left, 2), true);
  assert.equal(isXdgToplevelState(0), false);
  assert.equal(isWlOutputMode(0), true);
  assert.equal(isWlOutputMode(3), true);
  assert.equal(isWlOutputMode(4), false);
  assert.equal(isWlOutputMode(-1), false);
  assert.equal(isWlOutputMode(2 ** 32), false);
});

test('edge cases: reserved names, digit entries, bitfield since masks, escaped docs', () => {
  const edge = parseProtocol(readFileSync(EDGE_XML_FILE, 'utf8'), EDGE_XML_FILE);
  const text = generatedText([edge], 'edge_test_v1');
  assert.equal(messageSignature(edge.interfaces[0].requests[1]).signature, '2n?s?ouu');
  assert.equal(messageSignature(edge.interfaces[0].events[0]).signature, '3nhaf');
  // `interface` is reserved; `resource` clashes with the handler's first parameter.
  assert.match(
    text,
    /make\(resource: EdgeManagerV1Resource, id: number, interface_: string \| null, resource_: EdgeItemV1Resource \| null, kind: number, flags: number\): void;/,
  );
  assert.match(
    text,
    /make\(interface_: string \| null, resource: EdgeItemV1Proxy \| null, kind: EdgeManagerV1Kind, flags: number\): EdgeItemV1Proxy \{/,
  );
  assert.match(text, /_0d: 0,/);
  contains(text, 'if (version === undefined || version >= 3) mask = (mask | 0x80000000) >>> 0;');
  contains(
    text,
    'sendItem(item: EdgeItemV1Resource, data: number, blob: Uint8Array, value: number): boolean {',
    '    if (!this.alive || this.version < 3) return false;',
  );
  assert.match(text, /comment terminator \*\\\/ inside, and <markup>\./);
  assert.doesNotMatch(text.replace(/\*\//g, ''), /terminator \*\//);
  // Evaluate the generated validators on their own (type-stripped with TypeScript).
  const compile = (name: string) => {
    const start = text.indexOf(`export function ${name}(`);
    const source = text.slice(start, text.indexOf('\n}\n', start) + 2).replace('export ', '');
    const js = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022 } });
    return new Function(`${js.outputText}; return ${name};`)() as (
      v: number,
      version?: number,
    ) => boolean;
  };
  const flags = compile('isEdgeManagerV1Flags');
  assert.equal(flags(0), true);
  assert.equal(flags(3), true);
  assert.equal(flags(3, 1), false);
  assert.equal(flags(0x80000001), true);
  assert.equal(flags(0x80000001, 2), false);
  assert.equal(flags(4), false);
  const kind = compile('isEdgeManagerV1Kind');
  assert.equal(kind(0, 1), true);
  assert.equal(kind(7, 1), false);
  assert.equal(kind(7), true);
  assert.equal(kind(1), false);
});

test('interface name clashes: the later protocol is skipped with a note, dangling refs too', () => {
  const base = parseProtocol(
    '<protocol name="one"><interface name="thing" version="1"/></protocol>',
    'one.xml',
  );
  const clash = parseProtocol(
    '<protocol name="two"><interface name="thing" version="2"/><interface name="other" version="1"/></protocol>',
    'two.xml',
  );
  const dependent = parseProtocol(
    `<protocol name="three"><interface name="user" version="1">
       <request name="use"><arg name="o" type="object" interface="other"/></request>
     </interface></protocol>`,
    'three.xml',
  );
  const notes: string[] = [];
  const kept = selectProtocols([base, clash, dependent], (note) => notes.push(note));
  assert.deepEqual(
    kept.map((protocol) => protocol.name),
    ['one'],
  );
  assert.equal(notes.length, 2);
  assert.match(notes[0], /skipping protocol two .*redefines thing \(one\)/);
  assert.match(notes[1], /skipping protocol three .*no definition of other/);
});

test('the installed protocol set: names unique after selection, xdg-shell v5 dropped', () => {
  const notes: string[] = [];
  const protocols = selectProtocols(
    defaultXmlFiles().map((file) => parseProtocol(readFileSync(file, 'utf8'), file)),
    (note) => notes.push(note),
  );
  const names = protocols.flatMap((protocol) => protocol.interfaces.map((i) => i.name));
  assert.equal(new Set(names).size, names.length);
  assert.ok(protocols.some((protocol) => protocol.name === 'linux_dmabuf_unstable_v1'));
  assert.ok(protocols.some((protocol) => protocol.name === 'xdg_shell'));
  assert.ok(!protocols.some((protocol) => protocol.name === 'xdg_shell_unstable_v5'));
  assert.ok(notes.some((note) => note.includes('xdg_shell_unstable_v5')));
  // Generated identifiers are checked unique across the set (index.ts re-exports all).
  const files = generateProtocols(protocols, options);
  assert.equal(files.length, protocols.length + 1);
  const index = files.find((file) => file.fileName === 'index.ts');
  assert.match(index?.text ?? '', /export \* from '\.\/xdg_shell\.js';/);
  // Cross-protocol imports: xdg_shell uses wayland's surface/seat/output classes.
  const xdg = files.find((file) => file.protocol === 'xdg_shell')?.text ?? '';
  assert.match(xdg, /import \{[^}]*WlSurfaceProxy[^}]*\} from '\.\/wayland\.js';/);
});

test('malformed XML is rejected with the file and element named', () => {
  assert.throws(
    () => parseProtocol('<protocol name="x"><interface name="a"/></protocol>', 'bad.xml'),
    /bad\.xml: interface a: missing version/,
  );
  assert.throws(
    () =>
      parseProtocol(
        '<protocol name="x"><interface name="a" version="1"><request name="r"><arg name="v" type="float"/></request></interface></protocol>',
        'bad.xml',
      ),
    /a\.r\(v\): invalid type "float"/,
  );
  assert.throws(
    () =>
      parseProtocol(
        '<protocol name="x"><interface name="a" version="1"><request name="r" since="2"/></interface></protocol>',
        'bad.xml',
      ),
    /since 2 > version 1/,
  );
  assert.throws(
    () =>
      parseProtocol(
        '<protocol name="x"><interface name="a" version="1"><enum name="e"><entry name="v" value="-1"/></enum></interface></protocol>',
        'bad.xml',
      ),
    /invalid value "-1"/,
  );
  assert.throws(() => parseProtocol('<nothing/>', 'bad.xml'), /no <protocol> element/);
});

test('messages whose method names would collide are refused', () => {
  const protocol = parseProtocol(
    `<protocol name="clash"><interface name="thing" version="1">
       <request name="set_x"/><request name="setX"/>
     </interface></protocol>`,
    'clash.xml',
  );
  assert.throws(
    () => generateProtocols([protocol], options),
    /requests thing\.set_x and setX both become setX/,
  );
});

test('the CLI entry writes one module per protocol, drops stale ones, skips unchanged files', () => {
  const root = repositoryRoot();
  const scratch = path.join(root, 'build', 'test-scratch');
  mkdirSync(scratch, { recursive: true });
  const dir = mkdtempSync(path.join(scratch, 'scanner-cli-'));
  try {
    writeFileSync(path.join(dir, 'stale_protocol.ts'), '// left over\n');
    writeFileSync(path.join(dir, 'notes.txt'), 'not ours\n');
    const first = run(dir, [EDGE_XML_FILE], () => {});
    assert.deepEqual(first.written, ['edge_test_v1.ts', 'index.ts']);
    assert.deepEqual(readdirSync(dir).sort(), ['edge_test_v1.ts', 'index.ts', 'notes.txt']);
    const module = path.join(dir, 'edge_test_v1.ts');
    const text = readFileSync(module, 'utf8');
    assert.match(text, /from '\.\.\/\.\.\/\.\.\/protocol-xml\/runtime\/resource\.js';/);
    assert.match(text, /from '\.\.\/\.\.\/\.\.\/native\/index\.js';/);
    const past = new Date(2000, 0, 1);
    utimesSync(module, past, past);
    run(dir, [EDGE_XML_FILE], () => {});
    assert.equal(statSync(module).mtime.getTime(), past.getTime(), 'unchanged file not rewritten');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
