import { problemOf } from '../api/errors.ts';

/**
 * The server's field violations of a failed call, by request field, for the inputs that
 * show them (`error={violations.get('email')}`).
 */
export function fieldViolations(error: unknown): Map<string, string> {
  if (!error) return new Map();
  const sentence = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);
  return new Map(problemOf(error).fields.map((field) => [field.field, sentence(field.description)]));
}
