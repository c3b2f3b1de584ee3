/** What both entries (Node.js and browsers) export besides their createYardmasterClient. */
export type { CredentialOptions, SessionTokens, TokenStorage, YardmasterClient } from './client.ts';
export { backoffDelayMs, type BackoffOptions } from './backoff.ts';
export { errorReason, isResyncRequired, YardmasterError, type FieldViolation } from './errors.ts';
export { createSha256, type Hasher } from './sha256.ts';
export { tailLogs, watchJob, watchJobs, type ResumeOptions, type TailLogsOptions, type WatchJobsOptions } from './streams.ts';
export { localStorageTokenStorage, parseTokens, serializeTokens } from './token-storage.ts';
export {
  fetchPut,
  type DownloadFileOptions,
  type DownloadSink,
  type PutFunction,
  type PutRequest,
  type TransferProgress,
  type UploadFileOptions,
  type UploadSource,
} from './transfers.ts';
export * from './contract.ts';
