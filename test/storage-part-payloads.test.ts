/**
 * The payload hash of the parts the server uploads: UNSIGNED-PAYLOAD to a storage endpoint
 * on this host (nothing between the two to tamper with), the part's SHA-256 in the signed
 * request over plain HTTP to any other host, as minio sends it. Checked at a recording
 * proxy in front of the run's embedded S3 store (whose Signature V4 front checks every
 * request), reached once by its loopback address and once by this host's address on
 * another interface; the object read back must be the bytes sent, either way.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { Client as S3Client } from 'minio';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { minPartBytes, ObjectStorage } from '../src/platform/storage/object-storage.ts';

const endpoint = new URL(inject('s3Endpoint'));
const credentials = inject('s3Credentials');
const bucket = `parts-${randomBytes(4).toString('hex')}`;
/** Two whole parts and a shorter last one. */
const bytes = randomBytes(2 * minPartBytes + 123_457);

interface RecordedPart {
  declared: string | undefined;
  bodySha256: string;
  status: number;
}
const recorded: RecordedPart[] = [];
let proxy: http.Server;
let proxyPort: number;

beforeAll(async () => {
  const store = new S3Client({
    endPoint: endpoint.hostname,
    port: Number(endpoint.port),
    useSSL: false,
    ...credentials,
    region: 'us-east-1',
    pathStyle: true,
  });
  await store.makeBucket(bucket, 'us-east-1');
  // Passes every request on unchanged (the Host header too, which the signature covers),
  // noting for each part what the request declared as its payload's hash and what it carried.
  proxy = http.createServer((req, res) => {
    const isPart = req.method === 'PUT' && (req.url ?? '').includes('partNumber=');
    const hash = createHash('sha256');
    const upstream = http.request(
      { host: endpoint.hostname, port: Number(endpoint.port), method: req.method, path: req.url, headers: req.headers },
      (reply) => {
        if (isPart) {
          recorded.push({
            declared: req.headers['x-amz-content-sha256'] as string | undefined,
            bodySha256: hash.digest('hex'),
            status: reply.statusCode ?? 0,
          });
        }
        res.writeHead(reply.statusCode ?? 502, reply.headers);
        reply.pipe(res);
      },
    );
    req.on('data', (piece: Buffer) => hash.update(piece));
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '0.0.0.0', resolve));
  proxyPort = (proxy.address() as AddressInfo).port;
});

afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise<void>((resolve) => proxy?.close(() => resolve()) ?? resolve());
});

/** Uploads `bytes` through the proxy reached at `host`; the object read back, and the parts as the proxy saw them. */
async function uploadThrough(host: string, key: string): Promise<{ stored: Buffer; parts: RecordedPart[] }> {
  recorded.length = 0;
  const storage = new ObjectStorage({
    endpoint: `http://${host}:${proxyPort}`,
    publicEndpoint: `http://${host}:${proxyPort}`,
    ...credentials,
    bucket,
    region: 'us-east-1',
  });
  async function* chunks() {
    for (let offset = 0; offset < bytes.length; offset += 1024 * 1024 - 16) yield bytes.subarray(offset, offset + 1024 * 1024 - 16);
  }
  expect(await storage.uploadStream(key, chunks(), { partBytes: minPartBytes })).toBe(bytes.length);
  const pieces: Buffer[] = [];
  for await (const piece of await storage.read(key)) pieces.push(piece as Buffer);
  return { stored: Buffer.concat(pieces), parts: [...recorded] };
}

test('parts sent to a loopback endpoint over plain HTTP declare UNSIGNED-PAYLOAD, are accepted and stored byte for byte', async () => {
  for (const host of ['127.0.0.1', 'localhost']) {
    const { stored, parts } = await uploadThrough(host, `loopback-${host}`);
    expect(parts).toHaveLength(3);
    for (const part of parts) expect(part).toMatchObject({ declared: 'UNSIGNED-PAYLOAD', status: 200 });
    expect(stored.equals(bytes)).toBe(true);
  }
});

const otherAddress = Object.values(os.networkInterfaces())
  .flat()
  .find((address) => address && !address.internal && address.family === 'IPv4')?.address;

test.skipIf(!otherAddress)(
  'parts sent over plain HTTP to an address that is not loopback still carry their SHA-256 in the signed request',
  async () => {
    const { stored, parts } = await uploadThrough(otherAddress!, 'other-host');
    expect(parts).toHaveLength(3);
    for (const part of parts) {
      expect(part.status).toBe(200);
      expect(part.declared).toBe(part.bodySha256);
    }
    expect(stored.equals(bytes)).toBe(true);
  },
);
