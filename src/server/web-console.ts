import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { HttpRequest, HttpResponse } from './http-handler.ts';

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * The first path segments of the app's own pages (clients/web/src/app/router.tsx): only
 * these get index.html, so every other path (a mistyped API route, /metrics when it is
 * off) stays a plain 404.
 */
const appSections = new Set(['', 'sign-in', 'jobs', 'files', 'queues', 'admin', 'account']);

/** Encodings the build holds beside each text asset (clients/web/scripts/precompress.ts), best first. */
const precompressed = [
  { encoding: 'br', suffix: '.br' },
  { encoding: 'gzip', suffix: '.gz' },
];

/** The encodings an Accept-Encoding header allows (a `q=0` refuses one). */
function acceptedEncodings(header: string | string[] | undefined): Set<string> {
  const accepted = new Set<string>();
  for (const part of String(header ?? '').split(',')) {
    const [name = '', ...params] = part.trim().toLowerCase().split(';');
    const refused = params.some((param) => /^\s*q=0(\.0*)?\s*$/.test(param));
    if (name && !refused) accepted.add(name);
  }
  return accepted;
}

/** The smallest precompressed copy of `file` the browser accepts, if the build made one. */
async function encodedCopy(file: string, acceptEncoding: string | string[] | undefined) {
  const accepted = acceptedEncodings(acceptEncoding);
  for (const { encoding, suffix } of precompressed) {
    if (!accepted.has(encoding)) continue;
    const info = await stat(file + suffix).catch(() => undefined);
    if (info?.isFile()) return { file: file + suffix, size: info.size, encoding };
  }
  return undefined;
}

function isAppRoute(pathname: string): boolean {
  const [, section = ''] = pathname.split('/');
  return appSections.has(section) && !pathname.slice(1).includes('.');
}

export interface WebConsoleOptions {
  /** The built app (clients/web/dist). */
  distDir: string;
  /** Origins the page may talk to besides its own: the object storage of presigned transfers. */
  storageOrigins: string[];
}

/**
 * Serves the web console on the API's own port and origin: hashed assets cached for a
 * year, `index.html` never cached and returned for the app's routes (a reload of
 * /jobs/123 works), and headers that keep the page to what it needs: a
 * Content-Security-Policy allowing only its own origin and the storage endpoint,
 * no framing, no sniffing. Called for GET and HEAD requests that no RPC or plain route took.
 */
export function createWebConsole(options: WebConsoleOptions): (req: HttpRequest, res: HttpResponse) => Promise<boolean> {
  const distDir = path.resolve(options.distDir);
  const connectSources = ["'self'", ...options.storageOrigins].join(' ');
  const policy = [
    "default-src 'self'",
    "script-src 'self'",
    // Mantine sets CSS variables and positions through style attributes.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    `connect-src ${connectSources}`,
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
  const common = {
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'same-origin',
  };
  let indexHtml: Buffer | undefined;

  const sendIndex = async (req: HttpRequest, res: HttpResponse) => {
    indexHtml ??= await readFile(path.join(distDir, 'index.html')).catch(() => undefined);
    if (!indexHtml) {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...common });
      res.end('The web console is not built: run `npm run build:web` (npm install does it).\n');
      return;
    }
    res.writeHead(200, {
      'content-type': contentTypes['.html']!,
      'content-length': String(indexHtml.byteLength),
      'cache-control': 'no-cache',
      'content-security-policy': policy,
      ...common,
    });
    if (req.method === 'HEAD') res.end();
    else res.end(indexHtml);
  };

  return async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://console').pathname);
    } catch {
      return false;
    }
    const file = path.resolve(distDir, `.${pathname}`);
    if (pathname !== '/' && file.startsWith(distDir + path.sep) && !pathname.includes('\0')) {
      const info = await stat(file).catch(() => undefined);
      if (info?.isFile() && path.basename(file) !== 'index.html') {
        const hashed = pathname.startsWith('/assets/');
        const encoded = await encodedCopy(file, req.headers['accept-encoding']);
        res.writeHead(200, {
          'content-type': contentTypes[path.extname(file)] ?? 'application/octet-stream',
          'content-length': String(encoded?.size ?? info.size),
          'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'public, max-age=3600',
          ...(encoded && { 'content-encoding': encoded.encoding }),
          // Caches keep one copy per encoding.
          vary: 'accept-encoding',
          ...common,
        });
        if (req.method === 'HEAD') res.end();
        else createReadStream(encoded?.file ?? file).pipe(res);
        return true;
      }
    }
    if (!isAppRoute(pathname)) return false;
    await sendIndex(req, res);
    return true;
  };
}
