#!/usr/bin/env node
// In a checkout (TypeScript sources and tsx present) run the sources, so they
// are never stale; in an installed package or image, run the compiled dist/.
import { existsSync } from 'node:fs';

const source = new URL('../cli/sluice.ts', import.meta.url);
let useSource = existsSync(source);
if (useSource) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    useSource = false;
  }
}
await import(useSource ? source.href : new URL('../dist/cli/sluice.js', import.meta.url).href);
