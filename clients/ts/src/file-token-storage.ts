import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseTokens, serializeTokens, type TokenStorage } from './token-storage.ts';

/**
 * Tokens in a JSON file readable by its owner only (mode 0600, in a directory created
 * 0700), replaced atomically on every change and removed on sign-out: for CLIs and scripts
 * that stay signed in between runs.
 */
export function fileTokenStorage(file: string): TokenStorage {
  return {
    load() {
      try {
        return parseTokens(readFileSync(file, 'utf8'));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    save(tokens) {
      if (!tokens) {
        rmSync(file, { force: true });
        return;
      }
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      const temporary = `${file}.${process.pid}.tmp`;
      writeFileSync(temporary, serializeTokens(tokens), { mode: 0o600 });
      renameSync(temporary, file);
    },
  };
}
