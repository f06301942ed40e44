// Every generated protocol module loaded at once: the addon accepts all their tables (signatures,
// since prefixes, nullable arguments, cross-protocol types) in one batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { native } from '../../native/index.js';
import * as protocols from '../../build/protocols/index.js';
import {
  ensureInterfacesDefined,
  registeredInterfaceNames,
} from '../../protocol-xml/runtime/interfaces.js';
import { defaultXmlFiles } from '../../protocol-xml/generate.js';
import { parseProtocol, selectProtocols } from '../../protocol-xml/scanner.js';

test('all generated interfaces register and resolve in the addon', () => {
  const expected = selectProtocols(
    defaultXmlFiles().map((file) => parseProtocol(readFileSync(file, 'utf8'), file)),
  ).flatMap((protocol) => protocol.interfaces.map((iface) => iface.name));
  assert.ok(expected.length > 100, `${expected.length} interfaces`);
  // The index re-exports one spec constant per interface.
  const specs = Object.entries(protocols).filter(([key]) => key.endsWith('Interface'));
  assert.equal(specs.length, expected.length);

  assert.deepEqual(registeredInterfaceNames().sort(), [...expected].sort());
  ensureInterfacesDefined();
  for (const name of expected) assert.equal(native.hasInterface(name), true, name);
  // Registered already: defining again is a no-op, not an error.
  ensureInterfacesDefined();
  native.defineInterfaces([protocols.wlSurfaceInterface, protocols.zwpLinuxDmabufV1Interface]);
});
