import { createYardmasterClient, type SessionTokens } from '@yardmaster/client/web';

const storageKey = 'yardmaster.session';

interface StoredTokens {
  accessToken: string;
  refreshToken: string;
  accessTokenExpiresAt: string | null;
}

/** The session tokens this browser keeps, so that a reload (or another tab) stays signed in. */
function loadTokens(): SessionTokens | undefined {
  try {
    const stored = JSON.parse(localStorage.getItem(storageKey) ?? 'null') as StoredTokens | null;
    if (!stored?.accessToken || !stored.refreshToken) return undefined;
    return {
      accessToken: stored.accessToken,
      refreshToken: stored.refreshToken,
      accessTokenExpiresAt: stored.accessTokenExpiresAt ? new Date(stored.accessTokenExpiresAt) : undefined,
    };
  } catch {
    return undefined;
  }
}

function saveTokens(tokens: SessionTokens | undefined): void {
  if (!tokens) {
    localStorage.removeItem(storageKey);
    return;
  }
  const stored: StoredTokens = {
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    accessTokenExpiresAt: tokens.accessTokenExpiresAt?.toISOString() ?? null,
  };
  localStorage.setItem(storageKey, JSON.stringify(stored));
}

/** Listeners told when the session ends or begins (sign-in, sign-out, a refresh that failed). */
const sessionListeners = new Set<(signedIn: boolean) => void>();

export function onSessionChange(listener: (signedIn: boolean) => void): () => void {
  sessionListeners.add(listener);
  return () => sessionListeners.delete(listener);
}

/**
 * The one API client of the page: Connect (JSON) on the page's own origin, the session's
 * tokens kept in localStorage and refreshed before they expire.
 */
export const client = createYardmasterClient({
  baseUrl: window.location.origin,
  tokens: loadTokens(),
  onTokensChange: (tokens) => {
    saveTokens(tokens);
    for (const listener of sessionListeners) listener(tokens !== undefined);
  },
});

export const transport = client.transport;
