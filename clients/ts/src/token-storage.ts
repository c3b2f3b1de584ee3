import type { SessionTokens } from './token-session.ts';

/**
 * Where a client keeps its session tokens between runs (a reload, the next CLI call).
 * `load` runs once when the client is made and again before each refresh (another holder
 * may have rotated the single-use refresh token meanwhile); `save` after every change
 * (undefined: signed out). `subscribe`, when the storage can tell, reports changes made
 * by another holder (another tab), so this client never spends a refresh token that is
 * already used.
 */
export interface TokenStorage {
  load(): SessionTokens | undefined;
  save(tokens: SessionTokens | undefined): void;
  subscribe?(listener: (tokens: SessionTokens | undefined) => void): () => void;
}

/** The JSON form tokens are stored in. */
interface StoredTokens {
  accessToken: string;
  refreshToken: string;
  accessTokenExpiresAt: string | null;
}

export function serializeTokens(tokens: SessionTokens): string {
  const stored: StoredTokens = {
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    accessTokenExpiresAt: tokens.accessTokenExpiresAt?.toISOString() ?? null,
  };
  return JSON.stringify(stored);
}

/** Tokens from their JSON form; undefined for anything else (missing, corrupt). */
export function parseTokens(text: string | null | undefined): SessionTokens | undefined {
  if (!text) return undefined;
  try {
    const stored = JSON.parse(text) as Partial<StoredTokens> | null;
    if (typeof stored?.accessToken !== 'string' || typeof stored.refreshToken !== 'string') return undefined;
    return {
      accessToken: stored.accessToken,
      refreshToken: stored.refreshToken,
      accessTokenExpiresAt: stored.accessTokenExpiresAt ? new Date(stored.accessTokenExpiresAt) : undefined,
    };
  } catch {
    return undefined;
  }
}

/**
 * Tokens in the browser's localStorage under `key` (default `yardmaster.session`), shared by
 * every tab of the origin: a tab that refreshes writes the new pair, and the other tabs
 * take it over through the `storage` event instead of spending the old refresh token.
 */
export function localStorageTokenStorage(options: { key?: string; storage?: Storage } = {}): TokenStorage {
  const key = options.key ?? 'yardmaster.session';
  const storage = options.storage ?? globalThis.localStorage;
  return {
    load: () => parseTokens(storage.getItem(key)),
    save(tokens) {
      if (tokens) storage.setItem(key, serializeTokens(tokens));
      else storage.removeItem(key);
    },
    subscribe(listener) {
      if (typeof window === 'undefined') return () => {};
      const onStorage = (event: StorageEvent) => {
        if (event.storageArea === storage && (event.key === key || event.key === null)) listener(parseTokens(event.newValue));
      };
      window.addEventListener('storage', onStorage);
      return () => window.removeEventListener('storage', onStorage);
    },
  };
}
