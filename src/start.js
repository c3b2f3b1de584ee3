// The entry point (`npm start`, `node src/start.js`, the container): a plain-JavaScript
// check of the Node.js version first, so that a too-old runtime gets one line instead of
// a stack trace, then the server.
import './check-node.js';

await import('./main.ts');
