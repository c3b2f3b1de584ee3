// The entry point (`npm start`, `node src/start.js`, the container): a plain-JavaScript
// check of the Node.js version first, so that a too-old runtime gets one line instead of
// a stack trace, then the server.
import './check-node.js';
import module from 'node:module';

// Compiling (and type-stripping) the sources and dependencies is a good part of a start:
// keep the result on disk (under the system temporary directory) for the next one.
module.enableCompileCache();
await import('./main.ts');
