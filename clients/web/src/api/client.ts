import { createYardmasterClient, localStorageTokenStorage } from '@yardmaster/client/web';

/** Listeners told when the session ends or begins (sign-in, sign-out, a refresh that failed, another tab). */
const sessionListeners = new Set<(signedIn: boolean) => void>();

export function onSessionChange(listener: (signedIn: boolean) => void): () => void {
  sessionListeners.add(listener);
  return () => sessionListeners.delete(listener);
}

/**
 * The one API client of the page: Connect (JSON) on the page's own origin. The session's
 * tokens live in localStorage, shared by every tab of the origin: a reload stays signed in,
 * and a tab that refreshes hands the new pair to the others instead of letting them spend a
 * used refresh token (which the server would take for theft and end the session).
 */
export const client = createYardmasterClient({
  baseUrl: window.location.origin,
  tokenStorage: localStorageTokenStorage(),
  onTokensChange: (tokens) => {
    for (const listener of sessionListeners) listener(tokens !== undefined);
  },
});

export const transport = client.transport;
