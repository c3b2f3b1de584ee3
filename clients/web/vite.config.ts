import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defaultClientConditions, defineConfig } from 'vite';

/** Where `npm run dev:web` sends API calls: a running server (npm start). */
const apiTarget = process.env.YARDMASTER_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  resolve: {
    // The generated contract, as the server and the typed client use it.
    alias: { '@gen': fileURLToPath(new URL('../../gen', import.meta.url)) },
    // @yardmaster/client from its TypeScript sources (its package exports them under this
    // condition), not from its build: the console always runs the client of the same commit.
    conditions: ['@yardmaster/source', ...defaultClientConditions],
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Each page is its own chunk (React.lazy); the libraries every page needs go in one,
    // about 800 kB minified and 245 kB gzip'd: the budget is 300 kB gzip'd for a first load.
    chunkSizeWarningLimit: 900,
  },
  server: {
    port: 5173,
    // RPC paths are /<package>.<Service>/<Method>: everything with a dot in its first segment.
    proxy: {
      '^/[a-z0-9_]+(\\.[A-Za-z0-9_]+)+/': { target: apiTarget, changeOrigin: false },
      '/healthz': apiTarget,
      '/readyz': apiTarget,
    },
  },
});
