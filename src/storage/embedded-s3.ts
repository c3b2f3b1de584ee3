import { mkdir } from 'node:fs/promises';
import S3rver from 's3rver';
import type { Logger } from '../logger.ts';

/** s3rver accepts only these credentials. */
export const embeddedS3Credentials = { accessKey: 'S3RVER', secretKey: 'S3RVER' };

/**
 * Browsers upload and download straight to storage with presigned URLs, so the bucket
 * must answer cross-origin requests and let scripts read the ETag of each uploaded part.
 */
const bucketCors = `<CORSConfiguration>
  <CORSRule>
    <AllowedOrigin>*</AllowedOrigin>
    <AllowedMethod>GET</AllowedMethod>
    <AllowedMethod>PUT</AllowedMethod>
    <AllowedMethod>HEAD</AllowedMethod>
    <AllowedHeader>*</AllowedHeader>
    <ExposeHeader>ETag</ExposeHeader>
    <MaxAgeSeconds>3000</MaxAgeSeconds>
  </CORSRule>
</CORSConfiguration>`;

export interface EmbeddedS3 {
  /** Base URL, e.g. http://127.0.0.1:40123 */
  endpoint: string;
  stop(): Promise<void>;
}

/**
 * A local S3-compatible server (s3rver) keeping its objects under `directory`: the
 * default when S3_ENDPOINT is unset, and what the tests use. The storage code speaks
 * plain S3 to it, exactly as to MinIO.
 */
export async function startEmbeddedS3(options: { directory: string; host: string; bucket: string; logger: Logger }): Promise<EmbeddedS3> {
  await mkdir(options.directory, { recursive: true });
  const server = new S3rver({
    address: options.host,
    port: 0,
    directory: options.directory,
    silent: true,
    configureBuckets: [{ name: options.bucket, configs: [bucketCors] }],
  });
  const { port } = await server.run();
  const host = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
  const endpoint = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  options.logger.info({ endpoint, directory: options.directory }, 'embedded S3 storage started');
  return { endpoint, stop: () => server.close() };
}
