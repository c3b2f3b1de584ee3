#!/usr/bin/env node
// The compiled CLI (dist/, built by `npm run build`); under the `@yardmaster/source`
// condition (node --conditions=@yardmaster/source) its TypeScript sources instead.
import '#main';
