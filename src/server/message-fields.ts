import type { DescField, DescMessage, Message } from '@bufbuild/protobuf';

/**
 * The value at a dotted path of proto field names (`user.id`) in a message, as a
 * string; empty when a part is missing or the value is not a scalar.
 */
export function readFieldPath(desc: DescMessage, message: Message, path: string): string {
  if (path === '') return '';
  let currentDesc: DescMessage | undefined = desc;
  let current: unknown = message;
  for (const part of path.split('.')) {
    const field: DescField | undefined = currentDesc?.fields.find((candidate) => candidate.name === part);
    if (!field || current === undefined || current === null) return '';
    current = (current as Record<string, unknown>)[field.localName];
    currentDesc = field.fieldKind === 'message' ? field.message : undefined;
  }
  return typeof current === 'string' || typeof current === 'number' || typeof current === 'bigint' ? String(current) : '';
}
