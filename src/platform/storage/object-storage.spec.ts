import { expect, test } from 'vitest';
import { ObjectStorage, type StorageConfig } from './object-storage.ts';
import { verifySigV4 } from './sigv4.ts';

const config: StorageConfig = {
  endpoint: 'http://127.0.0.1:9',
  publicEndpoint: 'https://files.example.com',
  accessKey: 'yardmaster',
  secretKey: 'server-secret',
  bucket: 'bucket',
  region: 'us-east-1',
};

const secrets: Record<string, string> = { yardmaster: 'server-secret', 'yardmaster-presign': 'presign-secret' };

/** The access key a presigned URL was signed with, after checking its signature against that key's secret. */
function signerOf(url: string, method: string): string {
  const parsed = new URL(url);
  expect(verifySigV4({ method, url: `${parsed.pathname}${parsed.search}`, headers: { host: parsed.host } }, (key) => secrets[key])).toEqual(
    { ok: true },
  );
  return parsed.searchParams.get('X-Amz-Credential')!.split('/')[0]!;
}

test("presigned URLs are signed with the presigning credential when one is set, and with the server's own otherwise", async () => {
  const own = new ObjectStorage(config);
  expect(signerOf(await own.presignPut('uploads/u/f', 60), 'PUT')).toBe('yardmaster');

  const separate = new ObjectStorage({
    ...config,
    publicEndpoint: config.endpoint,
    presign: { accessKey: 'yardmaster-presign', secretKey: 'presign-secret' },
  });
  expect(signerOf(await separate.presignPut('uploads/u/f', 60), 'PUT')).toBe('yardmaster-presign');
  expect(signerOf(await separate.presignPart('files/u/f', 'upload-1', 2, 60), 'PUT')).toBe('yardmaster-presign');
  expect(signerOf(await separate.presignGet('files/u/f', 60, 'a.txt', 'text/plain'), 'GET')).toBe('yardmaster-presign');
});
