import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Logger } from '../platform/logger.ts';
import type { HttpHandler } from './http-handler.ts';
import { OpenCounts } from './open-counts.ts';

export interface ConnectionLimits {
  /** How long a request head (and a new connection's first bytes) may take to arrive. */
  headersTimeoutMs: number;
  /** How long a connection with no call in progress stays open (HTTP/2: then GOAWAY). */
  keepAliveTimeoutMs: number;
  /** How long a call in progress may move no byte either way before it is cut. */
  idleTimeoutMs: number;
  /** Open connections one peer address may hold; 0 = no cap. */
  maxConnectionsPerAddress: number;
}

export interface ListenOptions {
  host: string;
  port: number;
  tls: { cert: Buffer; key: Buffer } | undefined;
  logger: Logger;
  /** Aborted when shutdown begins: server streams end, unary calls run to completion. */
  shutdownController: AbortController;
  /** Header, keep-alive and idle timeouts, and the cap of connections per peer address. */
  connections: ConnectionLimits;
}

export interface Listener {
  url: string;
  port: number;
  /** Stops accepting, lets in-flight calls finish for up to `graceMs`, then closes what is left. */
  close(graceMs?: number): Promise<void>;
}

const http2Preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/**
 * HTTP/2 flow-control windows. The protocol's default (64 KiB) lets a stream carry one
 * window per round trip, which caps file transfers far below what the network and
 * storage can do; a few MiB per stream keeps large streams moving.
 */
const http2StreamWindowBytes = 4 * 1024 * 1024;
const http2SessionWindowBytes = 16 * 1024 * 1024;
/**
 * Node lets a peer open any number of concurrent streams on one session; 256 covers an
 * account's 100 server streams plus its calls, and bounds what one connection can start.
 */
const http2Settings = { initialWindowSize: http2StreamWindowBytes, maxConcurrentStreams: 256 };

/**
 * One port for every protocol. Without TLS, the first bytes of a connection decide:
 * the HTTP/2 preface goes to an HTTP/2 server (gRPC, Connect over h2c), anything else
 * to an HTTP/1.1 server (Connect, gRPC-Web, plain routes). With TLS, ALPN decides.
 */
export async function listen(handler: HttpHandler, options: ListenOptions): Promise<Listener> {
  const { headersTimeoutMs, keepAliveTimeoutMs, idleTimeoutMs, maxConnectionsPerAddress } = options.connections;
  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets = new Set<net.Socket>();
  let inFlight = 0;
  let draining = false;
  let drained: (() => void) | undefined;

  const tracked: HttpHandler = (req, res) => {
    inFlight++;
    if (req.httpVersionMajor === 1) {
      // A call in progress whose connection moves no byte either way for this long is cut
      // (streams send heartbeats, transfers move bytes). Node puts the keep-alive timeout
      // back on the socket once the reply is sent.
      req.socket.setTimeout(idleTimeoutMs);
      if (draining) res.setHeader('connection', 'close');
      // A reply sent before the whole request body was read (an oversized body refused
      // part way) must close the connection: the unread rest would be taken for the next request.
      const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => unknown;
      // A request without a body counts as incomplete until after its handler ran: only
      // a body announced by its headers can be left unread.
      const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
      res.writeHead = ((...args: unknown[]) => {
        if (hasBody && !req.complete) res.setHeader('connection', 'close');
        return writeHead(...args);
      }) as typeof res.writeHead;
    }
    // Over HTTP/2 the call lasts as long as its stream: a stream taken out of Connect's
    // pipeline (StreamHandoff) lets go of its compat response, which then never closes.
    if (req.httpVersionMajor === 1) res.once('close', callEnded);
    else (req as http2.Http2ServerRequest).stream.on('close', callEnded);
    handler(req, res);
  };
  // Shared by every call: a closure made per call would keep its request and response.
  const callEnded = () => {
    inFlight--;
    if (inFlight === 0) drained?.();
  };

  const trackSession = (session: http2.ServerHttp2Session) => {
    session.once('connect', () => session.setLocalWindowSize(http2SessionWindowBytes));
    sessions.add(session);
    // A session without streams for the keep-alive timeout gets GOAWAY and closes.
    let openStreams = 0;
    let keepAlive: NodeJS.Timeout | undefined;
    const armKeepAlive = () => {
      keepAlive = setTimeout(() => session.close(), keepAliveTimeoutMs);
      keepAlive.unref();
    };
    armKeepAlive();
    // One listener of each kind per session, not a closure per stream (an open stream keeps its listeners).
    const streamClosed = () => {
      if (--openStreams === 0 && !session.closed) armKeepAlive();
    };
    session.on('stream', (stream) => {
      openStreams++;
      clearTimeout(keepAlive);
      stream.setTimeout(idleTimeoutMs);
      stream.on('timeout', closeIdleStream);
      stream.on('close', streamClosed);
    });
    session.once('close', () => {
      clearTimeout(keepAlive);
      sessions.delete(session);
    });
  };
  // Node's HTTP/1.1 servers check header timeouts this often; its default (30 s) would
  // let a half-sent head live up to 30 s past its timeout.
  const connectionsCheckingInterval = Math.max(100, Math.min(1000, Math.floor(headersTimeoutMs / 4)));
  const http1Options = {
    requestTimeout: 0,
    headersTimeout: headersTimeoutMs,
    keepAliveTimeout: keepAliveTimeoutMs,
    connectionsCheckingInterval,
  };

  let server: net.Server;
  let h1: http.Server | undefined;
  if (options.tls) {
    const secure = http2.createSecureServer(
      {
        cert: options.tls.cert,
        key: options.tls.key,
        handshakeTimeout: headersTimeoutMs,
        allowHTTP1: true,
        // No overall request timeout here either (its default, 5 min, would cut long HTTP/1.1 transfers).
        ...http1Options,
        settings: http2Settings,
      },
      tracked,
    );
    secure.on('session', trackSession);
    secure.setTimeout(0);
    server = secure;
  } else {
    // No overall request timeout: the handler bounds single-message bodies on every
    // protocol (createHttpHandler), and streamed requests take as long as they take.
    h1 = http.createServer(http1Options, tracked);
    // Node starts its header-timeout checker when a server starts listening; this one gets
    // its sockets through emit('connection') and never listens, so it is started here.
    h1.emit('listening');
    const h2 = http2.createServer({ settings: http2Settings }, tracked);
    h2.on('session', trackSession);
    h2.setTimeout(0);
    const h1Server = h1;
    server = net.createServer((socket) => routeBySniffing(socket, h1Server, h2, headersTimeoutMs));
  }
  // First among the connection listeners, so that a refused socket is never read.
  const connectionsByAddress = new OpenCounts();
  server.prependListener('connection', (socket: net.Socket) => {
    const address = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    if (maxConnectionsPerAddress > 0 && connectionsByAddress.get(address) >= maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    const release = connectionsByAddress.take(address);
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      release();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;
  const hostForUrl = options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `${options.tls ? 'https' : 'http'}://${hostForUrl}:${port}`;

  return {
    url,
    port,
    async close(graceMs = 10_000) {
      draining = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      options.shutdownController.abort();
      h1?.closeIdleConnections();
      for (const session of sessions) session.close();
      if (inFlight > 0) {
        await Promise.race([
          new Promise<void>((resolve) => (drained = resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref()),
        ]);
        if (inFlight > 0) options.logger.warn({ inFlight }, 'closing calls that did not finish within the grace period');
      }
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
      // Stops the header-timeout checker started above (the server itself never listened).
      h1?.close(() => {});
      await stopped;
    },
  };
}

/** Hands the socket to h1 or h2 by its first bytes, which must arrive within `headersTimeoutMs`. */
function routeBySniffing(socket: net.Socket, h1: http.Server, h2: http2.Http2Server, headersTimeoutMs: number): void {
  if (socket.destroyed) return;
  let received = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), headersTimeoutMs);
  const onError = () => {
    clearTimeout(timer);
    socket.destroy();
  };
  socket.on('error', onError);
  const inspect = () => {
    for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null)
      received = Buffer.concat([received, chunk]);
    const compared = Math.min(received.length, http2Preface.length);
    const looksLikeHttp2 = received.subarray(0, compared).equals(http2Preface.subarray(0, compared));
    if (received.length === 0 || (looksLikeHttp2 && received.length < http2Preface.length)) {
      socket.once('readable', inspect);
      return;
    }
    clearTimeout(timer);
    socket.off('error', onError);
    socket.unshift(received);
    (looksLikeHttp2 ? h2 : h1).emit('connection', socket);
  };
  inspect();
}

/** An HTTP/2 stream that moved no byte either way for the idle timeout is cut. */
function closeIdleStream(this: http2.ServerHttp2Stream): void {
  this.close(http2.constants.NGHTTP2_CANCEL);
}
