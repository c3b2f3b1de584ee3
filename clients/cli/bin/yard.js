#!/usr/bin/env node
// The compiled CLI (dist/, built by `npm run build`); under the `@yardmaster/source`
// condition (node --conditions=@yardmaster/source) its TypeScript sources instead.
// Compiling (and type-stripping) is most of a start: the cache keeps it for the next run.
import module from 'node:module';

module.enableCompileCache?.();
await import('#main');
