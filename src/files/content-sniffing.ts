import { fileTypeFromBuffer } from 'file-type';

/** Bytes of a file's start that content sniffing looks at. */
export const sniffSampleBytes = 4100;

const textualTypes = /^(text\/|application\/(json|xml|javascript|x-ndjson|yaml|x-yaml|toml|csv|sql)\b)/;

/**
 * The content type of a file from its first bytes: magic numbers first; failing that,
 * text (valid UTF-8 without NUL bytes) is the client's claim when that claim is a text
 * type, else `text/plain`; anything else is `application/octet-stream`. The client's
 * claim alone never decides a binary type.
 */
export async function sniffContentType(sample: Uint8Array, claimed: string): Promise<string> {
  const detected = await fileTypeFromBuffer(sample);
  if (detected) return detected.mime;
  if (looksLikeText(sample)) {
    const claim = claimed.split(';')[0]!.trim().toLowerCase();
    return textualTypes.test(claim) ? claim : 'text/plain';
  }
  return 'application/octet-stream';
}

function looksLikeText(sample: Uint8Array): boolean {
  if (sample.includes(0)) return false;
  try {
    // A sample can end inside a multi-byte character: judge all but its last 3 bytes.
    new TextDecoder('utf-8', { fatal: true }).decode(sample.subarray(0, Math.max(0, sample.length - 3)));
    return true;
  } catch {
    return false;
  }
}

/** Whether `contentType` matches one of the patterns (`image/png`, `image/*`); an empty list allows any. */
export function isAllowedContentType(contentType: string, allowed: string[]): boolean {
  if (allowed.length === 0) return true;
  return allowed.some((pattern) => (pattern.endsWith('/*') ? contentType.startsWith(pattern.slice(0, -1)) : contentType === pattern));
}
