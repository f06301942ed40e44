// Placeholder: the scanner CLI. Writes generated TypeScript for every protocol XML to --out.
import { mkdirSync } from 'node:fs';

const outIndex = process.argv.indexOf('--out');
const out = outIndex >= 0 ? process.argv[outIndex + 1] : undefined;
if (!out) throw new Error('usage: generate --out DIR');
mkdirSync(out, { recursive: true });
