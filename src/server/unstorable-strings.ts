import { ScalarType, type DescField, type DescMessage, type JsonValue, type Message } from '@bufbuild/protobuf';
import type { FieldViolation } from '../platform/domain-errors.ts';

/**
 * What PostgreSQL text cannot hold: NUL (refused by text and jsonb alike) and lone
 * UTF-16 surrogates (jsonb refuses them; text would silently store U+FFFD instead).
 * Binary protobuf cannot carry a lone surrogate, but proto JSON can (`"\ud800"`).
 */
function isStorableText(text: string): boolean {
  return !text.includes('\0') && text.isWellFormed();
}

const describeUnstorable = 'must not contain NUL characters or unpaired UTF-16 surrogates';

/** JSON-quoted, so that a key holding the very character refused stays readable in the path. */
function keyPath(path: string, key: string): string {
  return `${path}[${JSON.stringify(key)}]`;
}

/**
 * Every string of a request message, at any depth (nested messages, repeated fields, map
 * keys and values, and the JSON inside Struct/Value/ListValue), that PostgreSQL cannot
 * store, by its field path in proto names (`requests[1].labels["k"]`). Bytes fields are
 * not text and are not looked at.
 */
export function unstorableStrings(desc: DescMessage, message: Message, prefix = ''): FieldViolation[] {
  const violations: FieldViolation[] = [];
  const add = (field: string) => violations.push({ field, description: describeUnstorable });
  const visitJson = (value: JsonValue, path: string): void => {
    if (typeof value === 'string') {
      if (!isStorableText(value)) add(path);
    } else if (Array.isArray(value)) {
      for (const [index, item] of value.entries()) visitJson(item, `${path}[${index}]`);
    } else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) {
        if (!isStorableText(key)) add(keyPath(path, key));
        visitJson(item, keyPath(path, key));
      }
    }
  };
  const visitMessage = (messageDesc: DescMessage, value: unknown, path: string): void => {
    if (value === undefined || value === null) return;
    switch (messageDesc.typeName) {
      // protobuf-es holds these well-known types as plain JSON (and wrappers unboxed).
      case 'google.protobuf.Struct':
      case 'google.protobuf.Value':
      case 'google.protobuf.ListValue':
        visitJson(value as JsonValue, path);
        return;
      case 'google.protobuf.StringValue':
        if (typeof value === 'string' && !isStorableText(value)) add(path);
        return;
    }
    visitFields(messageDesc, value as Record<string, unknown>, path);
  };
  const visitValue = (field: DescField, kind: 'scalar' | 'message' | 'enum', value: unknown, path: string): void => {
    if (kind === 'scalar' && field.scalar === ScalarType.STRING) {
      if (typeof value === 'string' && !isStorableText(value)) add(path);
    } else if (kind === 'message' && field.message) {
      visitMessage(field.message, value, path);
    }
  };
  const visitField = (field: DescField, value: unknown, path: string): void => {
    switch (field.fieldKind) {
      case 'scalar':
      case 'message':
      case 'enum':
        visitValue(field, field.fieldKind, value, path);
        return;
      case 'list':
        for (const [index, item] of (value as unknown[]).entries()) visitValue(field, field.listKind, item, `${path}[${index}]`);
        return;
      case 'map':
        for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
          const itemPath = keyPath(path, key);
          if (field.mapKey === ScalarType.STRING && !isStorableText(key)) add(itemPath);
          visitValue(field, field.mapKind, item, itemPath);
        }
        return;
    }
  };
  const visitFields = (messageDesc: DescMessage, value: Record<string, unknown>, path: string): void => {
    const at = (name: string) => (path === '' ? name : `${path}.${name}`);
    for (const member of messageDesc.members) {
      if (member.kind === 'oneof') {
        const chosen = value[member.localName] as { case: string | undefined; value?: unknown };
        const field = member.fields.find((candidate) => candidate.localName === chosen.case);
        if (field) visitField(field, chosen.value, at(field.name));
      } else {
        visitField(member, value[member.localName], at(member.name));
      }
    }
  };
  visitFields(desc, message as unknown as Record<string, unknown>, prefix);
  return violations;
}
