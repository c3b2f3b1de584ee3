/** `text` with LIKE's wildcards (`%`, `_`) and its escape (`\`) escaped, to match literally. */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}
