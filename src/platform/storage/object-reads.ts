import net from 'node:net';
import tls from 'node:tls';
import { S3Error } from 'minio';
import { signSigV4 } from './sigv4.ts';

/**
 * An object's bytes as storage sends them, read into buffers the caller brings: nothing is
 * allocated per read. The caller keeps each filled buffer as long as it likes (a Download
 * frame until its write is done) and brings it back when it is free.
 */
export interface ObjectBody {
  /** The body's length in bytes, as storage declared it (undefined for a chunked body). */
  readonly size: number | undefined;
  /**
   * Fills `target` from its start with the body's next bytes, up to its length or the
   * body's end; resolves with how many (0 at the end). One call at a time.
   */
  readInto(target: Uint8Array): Promise<number>;
  /**
   * Ends the read. A body read to its end leaves its connection for the next read; one left
   * mid-way closes it (the rest of the body is not worth reading), and a pending `readInto`
   * rejects.
   */
  close(): void;
}

export interface ObjectReadsConfig {
  /** http(s)://host:port of the S3 API. */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region: string;
  bucket: string;
  /** Idle connections kept for the next reads (default 8). */
  maxIdle?: number;
  /** An idle connection is closed after this long (default 4 s, under the 5 s keep-alive of Node servers). */
  idleMs?: number;
  /** TLS options (CA) for https endpoints, for tests; the system's CAs otherwise. */
  tls?: tls.ConnectionOptions;
}

/** Per connection: the response head, and body bytes that came with it or before a buffer was brought. */
const scratchBytes = 16 * 1024;
const crlf = Buffer.from('\r\n');
const headEnd = Buffer.from('\r\n\r\n');

/**
 * Object GETs on keep-alive connections of their own, read with net's `onread` straight into
 * the caller's buffers, for the one read that moves a file's every byte through the server
 * (Download).
 *
 * Through node:http (minio's getObject), every socket read is a fresh 64 KiB ArrayBuffer in
 * external memory, freed only by full mark-compacts of the heap: reading storage and
 * collecting those buffers were about 85% of the server's CPU per MiB downloaded. Here a
 * read lands in the caller's buffer (or, for the response head and the bytes that come
 * before a buffer is there, in the connection's 16 KiB scratch, copied once), and the
 * reply is parsed by a minimal HTTP/1.1 reader: status line, headers, a body of
 * Content-Length or chunked, keep-alive. Requests are signed with Signature V4, as minio
 * signs its own; error replies become the same `S3Error` (code and message from storage's
 * XML) minio throws, so `isNotFoundError` and the callers see no difference.
 */
export class ObjectReads {
  readonly #config: ObjectReadsConfig;
  readonly #url: URL;
  readonly #host: string;
  readonly #idle: StorageConnection[] = [];
  readonly #open = new Set<StorageConnection>();

  constructor(config: ObjectReadsConfig) {
    this.#config = config;
    this.#url = new URL(config.endpoint);
    this.#host = this.#url.host;
  }

  /** Connections open now, idle or reading (for tests: a cancelled read must not leave one behind). */
  get openConnections(): number {
    return this.#open.size;
  }

  get idleConnections(): number {
    return this.#idle.length;
  }

  /** Starts reading `key` from `offset`, `length` bytes of it (to the end when undefined); resolves once storage answered. */
  async open(key: string, offset = 0, length?: number): Promise<ObjectBody> {
    const path = `/${encodePathSegment(this.#config.bucket)}/${key.split('/').map(encodePathSegment).join('/')}`;
    const headers: Record<string, string> = { host: this.#host };
    if (offset > 0 || length !== undefined) headers.range = `bytes=${offset}-${length === undefined ? '' : offset + length - 1}`;
    for (;;) {
      const reused = this.#idle.pop();
      const connection = reused ?? this.#connect();
      const signed = signSigV4({ method: 'GET', path, headers }, this.#config);
      try {
        return await connection.get(path, signed, key);
      } catch (error) {
        // A kept connection that storage closed while idle fails before any byte of the
        // answer: the GET is safe to send again, on a new connection.
        if (reused && error instanceof StaleConnection) continue;
        throw error instanceof StaleConnection ? error.cause : error;
      }
    }
  }

  /** Closes the idle connections (the ones reading close when their reads end). */
  close(): void {
    for (const connection of this.#idle.splice(0)) connection.destroy();
  }

  #connect(): StorageConnection {
    const url = this.#url;
    const secure = url.protocol === 'https:';
    const connection = new StorageConnection(
      (onread) => {
        const host = url.hostname.replace(/^\[|\]$/g, '');
        const port = url.port ? Number(url.port) : secure ? 443 : 80;
        return secure
          ? // TLS sockets take `onread` too (Node 15+), though its type does not say so.
            tls.connect({
              host,
              port,
              servername: net.isIP(host) ? undefined : host,
              ALPNProtocols: ['http/1.1'],
              onread,
              ...this.#config.tls,
            } as tls.ConnectionOptions)
          : net.connect({ host, port, onread, noDelay: true });
      },
      {
        idleMs: this.#config.idleMs ?? 4000,
        onIdle: (idle) => {
          if (this.#idle.length < (this.#config.maxIdle ?? 8)) this.#idle.push(idle);
          else idle.destroy();
        },
        onClose: (closed) => {
          this.#open.delete(closed);
          const at = this.#idle.indexOf(closed);
          if (at !== -1) this.#idle.splice(at, 1);
        },
      },
    );
    this.#open.add(connection);
    return connection;
  }
}

/** A kept connection that failed before storage answered anything. */
class StaleConnection extends Error {}

type OnRead = { buffer: () => Uint8Array; callback: (bytes: number, buffer: Uint8Array) => boolean };

type Phase =
  | { kind: 'idle' }
  | { kind: 'head' }
  | { kind: 'length'; left: number }
  | { kind: 'chunked'; step: 'size' | 'data' | 'data-end' | 'trailer'; left: number }
  | { kind: 'closed' };

interface Head {
  status: number;
  headers: Map<string, string>;
}

/** One keep-alive connection to storage and the reply it is reading. */
class StorageConnection {
  readonly #socket: net.Socket;
  readonly #scratch = Buffer.allocUnsafeSlow(scratchBytes);
  /** Unconsumed bytes in the scratch: [start, end). */
  #start = 0;
  #end = 0;
  #phase: Phase = { kind: 'head' };
  #paused = false;
  /** The scratch was handed to the socket whole while full: the next read may only land once it is all consumed. */
  #readsIntoFullScratch = false;
  #answered = false;
  /** Which GET the connection serves: a body keeps reading only while it is the current one. */
  #generation = 0;
  #bodyComplete = false;
  #keepAlive = true;
  #key = '';
  /** What the reply's current reader waits for. */
  #onHead: ((head: Head) => void) | undefined;
  #target: { buffer: Uint8Array; filled: number; done: (filled: number) => void } | undefined;
  #errorBody: Buffer[] | undefined;
  #fail: ((error: Error) => void) | undefined;
  readonly #options: { idleMs: number; onIdle: (connection: StorageConnection) => void; onClose: (connection: StorageConnection) => void };

  constructor(
    connect: (onread: OnRead) => net.Socket,
    options: { idleMs: number; onIdle: (connection: StorageConnection) => void; onClose: (connection: StorageConnection) => void },
  ) {
    this.#options = options;
    this.#socket = connect({ buffer: () => this.#nextBuffer(), callback: (bytes, buffer) => this.#onRead(bytes, buffer) });
    this.#socket.on('error', (error) => this.#failWith(error));
    this.#socket.on('end', () => {
      if (!this.#allReceived()) this.#failWith(new Error('storage closed the connection'));
    });
    this.#socket.on('close', () => {
      // A body received whole (some of it still in the scratch) is still read to its end.
      if (!this.#allReceived()) {
        this.#phase = { kind: 'closed' };
        this.#failWith(new Error('storage closed the connection'));
      }
      options.onClose(this);
    });
    this.#socket.on('timeout', () => this.destroy());
  }

  #allReceived(): boolean {
    return this.#phase.kind === 'length' && this.#phase.left === 0;
  }

  destroy(): void {
    this.#phase = { kind: 'closed' };
    this.#socket.destroy();
  }

  /** Sends a GET and resolves with the body once the head arrived; rejects with storage's error for a non-2xx answer. */
  get(path: string, headers: Record<string, string>, key: string): Promise<ObjectBody> {
    this.#key = key;
    this.#phase = { kind: 'head' };
    this.#generation++;
    this.#bodyComplete = false;
    this.#answered = false;
    this.#start = this.#end = 0;
    this.#socket.setTimeout(0);
    this.#socket.ref();
    let request = `GET ${path} HTTP/1.1\r\n`;
    for (const [name, value] of Object.entries(headers)) request += `${name}: ${value}\r\n`;
    this.#socket.write(`${request}\r\n`);
    this.#resume();
    return new Promise<Head>((resolve, reject) => {
      this.#onHead = resolve;
      this.#fail = reject;
    }).then((head) => this.#bodyFor(head));
  }

  #bodyFor(head: Head): ObjectBody | Promise<never> {
    const generation = this.#generation;
    const chunked = this.#phase.kind === 'chunked' || head.headers.get('transfer-encoding')?.toLowerCase().includes('chunked');
    const size = chunked ? undefined : Number(head.headers.get('content-length') ?? Number.NaN);
    if (head.status < 200 || head.status >= 300) return this.#readError(head, generation);
    if (size !== undefined && !Number.isSafeInteger(size)) {
      this.destroy();
      return Promise.reject(new Error(`storage answered a GET without a Content-Length (status ${head.status})`));
    }
    let closed = false;
    return {
      size,
      readInto: (target) => {
        if (closed) return Promise.reject(new Error('the object body is closed'));
        // Read whole, and the connection maybe serving another GET already.
        if (generation !== this.#generation || this.#bodyComplete) return Promise.resolve(0);
        return this.#readInto(target);
      },
      close: () => {
        if (closed) return;
        closed = true;
        if (generation !== this.#generation || this.#bodyComplete) return;
        this.#failWith(new Error('the object body is closed'));
        this.destroy();
      },
    };
  }

  #readInto(buffer: Uint8Array): Promise<number> {
    if (this.#phase.kind === 'closed') return Promise.reject(new Error('storage closed the connection'));
    if (buffer.byteLength === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#target = { buffer, filled: 0, done: resolve };
      this.#fail = reject;
      this.#advance();
      this.#steer();
    });
  }

  /** A non-2xx reply: its body (storage's XML) read whole, then the error minio would throw. */
  #readError(head: Head, generation: number): Promise<never> {
    if (generation !== this.#generation || this.#bodyComplete) return Promise.reject(storageError(head, '', this.#key));
    this.#errorBody = [];
    return new Promise<number>((resolve, reject) => {
      this.#target = { buffer: new Uint8Array(0), filled: 0, done: resolve };
      this.#fail = reject;
      this.#advance();
      this.#steer();
    }).then(() => {
      const xml = Buffer.concat(this.#errorBody ?? []).toString('utf8');
      this.#errorBody = undefined;
      throw storageError(head, xml, this.#key);
    });
  }

  /** Where the next socket read lands: the caller's buffer when the body can go straight there, the scratch otherwise. */
  #nextBuffer(): Uint8Array {
    const phase = this.#phase;
    const target = this.#target;
    this.#readsIntoFullScratch = false;
    if (phase.kind === 'length' && this.#start === this.#end && target && !this.#errorBody && target.filled < target.buffer.byteLength) {
      return target.buffer.subarray(target.filled, target.filled + Math.min(target.buffer.byteLength - target.filled, phase.left));
    }
    if (this.#start === this.#end) this.#start = this.#end = 0;
    else if (this.#start > 0) {
      this.#scratch.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    // Full: read into again only once all consumed (reading is paused until then).
    this.#readsIntoFullScratch = this.#end === scratchBytes;
    if (this.#readsIntoFullScratch) return this.#scratch;
    const limit = phase.kind === 'length' ? Math.min(scratchBytes, this.#end + phase.left) : scratchBytes;
    return this.#scratch.subarray(this.#end, Math.max(limit, this.#end + 1));
  }

  #onRead(bytes: number, buffer: Uint8Array): boolean {
    if (buffer.buffer === this.#scratch.buffer) {
      const at = buffer.byteOffset - this.#scratch.byteOffset;
      if (this.#start === this.#end) {
        this.#start = at;
        this.#end = at + bytes;
      } else if (at === this.#end) this.#end += bytes;
      else return this.#protocolError('a read landed on unread bytes');
    } else {
      const target = this.#target;
      const phase = this.#phase;
      if (!target || buffer.buffer !== target.buffer.buffer || phase.kind !== 'length')
        return this.#protocolError('a read landed in no buffer');
      target.filled += bytes;
      phase.left -= bytes;
    }
    this.#advance();
    // Answering false stops the socket's reads as pause() would; resume() starts them again.
    const wants = this.#wantsBytes();
    this.#paused = !wants;
    return wants;
  }

  /** Moves the scratch's bytes on: the head parsed, body bytes into the target, chunk framing stripped. */
  #advance(): void {
    for (;;) {
      const phase = this.#phase;
      if (phase.kind === 'head') {
        const at = this.#scratch.subarray(this.#start, this.#end).indexOf(headEnd);
        if (at === -1) {
          if (this.#end - this.#start === scratchBytes) this.#protocolError('the reply head is larger than 16 KiB');
          return;
        }
        const head = parseHead(this.#scratch.toString('latin1', this.#start, this.#start + at));
        this.#start += at + headEnd.byteLength;
        if (!head) return void this.#protocolError('the reply head is malformed');
        this.#answered = true;
        this.#keepAlive = head.keepAlive;
        if (head.headers.get('transfer-encoding')?.toLowerCase().includes('chunked'))
          this.#phase = { kind: 'chunked', step: 'size', left: 0 };
        else this.#phase = { kind: 'length', left: Number(head.headers.get('content-length') ?? 0) || 0 };
        const onHead = this.#onHead;
        this.#onHead = undefined;
        onHead?.(head);
        continue;
      }
      if (phase.kind === 'length') {
        const take = Math.min(this.#end - this.#start, phase.left, this.#room());
        if (take > 0) this.#take(take);
        phase.left -= take;
        if (phase.left === 0 && this.#start === this.#end) this.#bodyDone();
        else this.#settleIfFull();
        return;
      }
      if (phase.kind === 'chunked') {
        if (!this.#advanceChunked(phase)) {
          this.#settleIfFull();
          return;
        }
        if (phase.step === 'trailer' && phase.left === -1) {
          this.#bodyDone();
          return;
        }
        continue;
      }
      return;
    }
  }

  /** One step of a chunked body; false when it needs more bytes or room. */
  #advanceChunked(phase: Extract<Phase, { kind: 'chunked' }>): boolean {
    const available = this.#scratch.subarray(this.#start, this.#end);
    if (phase.step === 'size' || phase.step === 'trailer') {
      const at = available.indexOf(crlf);
      if (at === -1) {
        if (available.byteLength === scratchBytes) this.#protocolError('a chunk line is larger than 16 KiB');
        return false;
      }
      const line = available.toString('latin1', 0, at);
      this.#start += at + crlf.byteLength;
      if (phase.step === 'trailer') {
        if (line === '') phase.left = -1;
        return true;
      }
      const size = Number.parseInt(line.split(';')[0]!.trim(), 16);
      if (!Number.isSafeInteger(size) || size < 0) return this.#protocolError('a chunk size is malformed');
      phase.step = size === 0 ? 'trailer' : 'data';
      phase.left = size;
      return true;
    }
    if (phase.step === 'data') {
      const take = Math.min(available.byteLength, phase.left, this.#room());
      if (take === 0) return false;
      this.#take(take);
      phase.left -= take;
      if (phase.left === 0) phase.step = 'data-end';
      return true;
    }
    if (available.byteLength < crlf.byteLength) return false;
    if (available[0] !== 0x0d || available[1] !== 0x0a) return this.#protocolError('a chunk does not end with CRLF');
    this.#start += crlf.byteLength;
    phase.step = 'size';
    return true;
  }

  /** Room left in what the body is read into (an error body takes everything). */
  #room(): number {
    const target = this.#target;
    if (this.#errorBody) return Number.POSITIVE_INFINITY;
    return target ? target.buffer.byteLength - target.filled : 0;
  }

  #take(bytes: number): void {
    const piece = this.#scratch.subarray(this.#start, this.#start + bytes);
    if (this.#errorBody) this.#errorBody.push(Buffer.from(piece));
    else {
      const target = this.#target!;
      target.buffer.set(piece, target.filled);
      target.filled += bytes;
    }
    this.#start += bytes;
  }

  #settleIfFull(): void {
    const target = this.#target;
    if (target && !this.#errorBody && target.filled === target.buffer.byteLength) {
      this.#target = undefined;
      this.#fail = undefined;
      target.done(target.filled);
    }
  }

  /** The reply is read whole: the waiting reader gets what it has, the connection goes back to the pool. */
  #bodyDone(): void {
    this.#phase = { kind: 'idle' };
    this.#bodyComplete = true;
    const target = this.#target;
    this.#target = undefined;
    this.#fail = undefined;
    if (this.#keepAlive) {
      this.#socket.setTimeout(this.#options.idleMs);
      this.#socket.unref();
      this.#options.onIdle(this);
    } else this.destroy();
    target?.done(target.filled);
  }

  /** Whether the socket should keep reading: a head or chunk line to finish, room for the body, or idle (to see storage close it). */
  #wantsBytes(): boolean {
    const phase = this.#phase;
    if (phase.kind === 'closed') return false;
    if (phase.kind === 'idle') {
      if (this.#end > this.#start) this.#protocolError('storage sent bytes nobody asked for');
      return true;
    }
    if (this.#readsIntoFullScratch && this.#start !== this.#end) return false;
    if (phase.kind === 'head' || this.#errorBody) return true;
    if (this.#room() === 0) return false;
    return phase.kind === 'length' ? this.#start === this.#end : this.#end - this.#start < scratchBytes;
  }

  /** Pauses or resumes the socket as `#wantsBytes` says. */
  #steer(): void {
    const wants = this.#wantsBytes();
    if (wants && this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    } else if (!wants && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  #resume(): void {
    this.#paused = true;
    this.#steer();
  }

  #protocolError(message: string): false {
    this.#failWith(new Error(`storage's reply cannot be read: ${message}`));
    this.destroy();
    return false;
  }

  #failWith(error: Error): void {
    const fail = this.#fail;
    this.#fail = undefined;
    this.#onHead = undefined;
    this.#target = undefined;
    if (!fail) return;
    this.#phase = { kind: 'closed' };
    this.#socket.destroy();
    fail(this.#answered ? error : new StaleConnection(error.message, { cause: error }));
  }
}

function parseHead(text: string): (Head & { keepAlive: boolean }) | undefined {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
  if (!status) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  const connection = headers.get('connection')?.toLowerCase() ?? '';
  const keepAlive = status[1] === '1' ? !connection.includes('close') : connection.includes('keep-alive');
  return { status: Number(status[2]), headers, keepAlive };
}

/** The error minio's getObject throws for the same reply: code and message from the XML, or from the status alone. */
function storageError(head: Head, xml: string, key: string): S3Error {
  const fromStatus: Record<number, [string, string]> = {
    301: ['MovedPermanently', 'Moved Permanently'],
    307: ['TemporaryRedirect', 'Are you using the correct endpoint URL?'],
    403: ['AccessDenied', 'Valid and authorized credentials required'],
    404: ['NotFound', 'Not Found'],
    405: ['MethodNotAllowed', 'Method Not Allowed'],
    501: ['MethodNotAllowed', 'Method Not Allowed'],
    503: ['SlowDown', 'Please reduce your request rate.'],
  };
  const tag = (name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];
  const [code, message] = xml ? [tag('Code') ?? '', tag('Message') ?? ''] : (fromStatus[head.status] ?? ['', '']);
  const error = new S3Error(message || `storage answered ${head.status}`);
  error.code = code || `Status${head.status}`;
  Object.assign(error, {
    key: tag('Key') ?? key,
    resource: tag('Resource'),
    requestid: tag('RequestId'),
    amzRequestid: head.headers.get('x-amz-request-id'),
  });
  return error;
}

/** A path segment as S3's canonical URI has it (RFC 3986 unreserved characters kept, the rest escaped). */
function encodePathSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (character) => `%${character.charCodeAt(0).toString(16).toUpperCase()}`);
}
