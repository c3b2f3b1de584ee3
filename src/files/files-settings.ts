import { bytesSetting, durationSetting, stringListSetting } from '../platform/settings/setting-types.ts';

const hour = 3_600_000;
const mib = 1024 ** 2;
const gib = 1024 ** 3;

export const defaultMaxUploadBytes = 5 * gib;

/** Runtime settings of files. The upload limit's default comes from MAX_UPLOAD_BYTES. */
export const filesSettings = {
  'files.max_upload_bytes': bytesSetting(defaultMaxUploadBytes, 'Largest file that may be uploaded, on every upload path', {
    min: 1,
    max: 5 * 1024 * gib,
  }),
  'files.user_quota_bytes': bytesSetting(0, 'Bytes each account may store (available and uploading files); 0 for no quota', {
    min: 0,
    max: 1024 ** 5,
  }),
  'files.allowed_content_types': stringListSetting(
    [],
    'Content types files may have, as sniffed from their bytes (`image/png`, or `image/*` for a family); empty allows every type',
    (item) => /^[a-z0-9.+-]+\/([a-z0-9.+-]+|\*)$/.test(item),
  ),
  'files.multipart_threshold_bytes': bytesSetting(
    64 * mib,
    'Presigned uploads of files larger than this are planned in parts (each at least 16 MiB), sent in parallel; smaller ones are one PUT',
    // S3 takes at most 5 GiB in one PUT.
    { min: mib, max: 5 * gib },
  ),
  'files.upload_expiry': durationSetting(24 * hour, 'How long an upload may stay incomplete before it is aborted and removed', {
    minMs: 60_000,
    maxMs: 7 * 24 * hour,
  }),
};
