import { Code } from '@connectrpc/connect';

/** Connect's wire name of a code: `permission_denied`, `ok`... */
export function codeName(code: Code): string {
  return Code[code]!.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}
