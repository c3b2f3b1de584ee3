/** Tokens from Login, Register or Refresh. */
export interface SessionTokens {
  accessToken: string;
  refreshToken: string;
  /** When the access token expires; refreshed a little before. */
  accessTokenExpiresAt: Date | undefined;
}

import type { TokenStorage } from './token-storage.ts';

type Refresher = (refreshToken: string) => Promise<SessionTokens>;

/** Refresh this long before the access token expires, so calls never carry a dying token. */
const refreshAheadMs = 30_000;

/**
 * The credentials a client sends: an API key, or a pair of session tokens that it
 * refreshes itself. Concurrent calls that need a refresh share one (single flight):
 * refresh tokens are single-use, and two refreshes with the same token would end the
 * session as a suspected theft.
 */
export class TokenSession {
  #apiKey: string | undefined;
  #tokens: SessionTokens | undefined;
  #refreshing: Promise<SessionTokens> | undefined;
  #refresher: Refresher | undefined;
  readonly #onChange: ((tokens: SessionTokens | undefined) => void) | undefined;
  readonly #storage: TokenStorage | undefined;
  readonly #unsubscribe: (() => void) | undefined;

  constructor(options: {
    apiKey?: string;
    tokens?: SessionTokens;
    onChange?: (tokens: SessionTokens | undefined) => void;
    storage?: TokenStorage;
  }) {
    this.#apiKey = options.apiKey;
    this.#storage = options.storage;
    this.#tokens = options.tokens ?? (options.apiKey ? undefined : options.storage?.load());
    if (options.tokens && options.storage) options.storage.save(options.tokens);
    this.#onChange = options.onChange;
    // Another holder of the same storage (another tab) changed the tokens: take them over.
    this.#unsubscribe = options.storage?.subscribe?.((tokens) => this.#adopt(tokens));
  }

  #adopt(tokens: SessionTokens | undefined): void {
    if (tokens?.refreshToken === this.#tokens?.refreshToken && tokens?.accessToken === this.#tokens?.accessToken) return;
    this.#tokens = tokens;
    this.#onChange?.(tokens);
  }

  /** Stops following the storage's changes. */
  close(): void {
    this.#unsubscribe?.();
  }

  setRefresher(refresher: Refresher): void {
    this.#refresher = refresher;
  }

  get tokens(): SessionTokens | undefined {
    return this.#tokens;
  }

  set tokens(tokens: SessionTokens | undefined) {
    this.#tokens = tokens;
    this.#storage?.save(tokens);
    this.#onChange?.(tokens);
  }

  get canRefresh(): boolean {
    return this.#apiKey === undefined && this.#tokens !== undefined && this.#refresher !== undefined;
  }

  /** The bearer credential for the next call, refreshing the access token first when it is about to expire. */
  async bearer(): Promise<string | undefined> {
    if (this.#apiKey) return this.#apiKey;
    const expiresAt = this.#tokens?.accessTokenExpiresAt;
    if (this.canRefresh && expiresAt && expiresAt.getTime() - Date.now() < refreshAheadMs) {
      await this.refresh().catch(() => undefined);
    }
    return this.#tokens?.accessToken;
  }

  /** Exchanges the refresh token for new tokens, once however many callers ask at the same time. */
  refresh(): Promise<SessionTokens> {
    if (this.#refreshing) return this.#refreshing;
    // Another holder of the storage may have refreshed already: its pair is the newer one,
    // and our refresh token is spent.
    const stored = this.#storage?.load();
    if (stored && stored.refreshToken !== this.#tokens?.refreshToken) {
      this.#adopt(stored);
      return Promise.resolve(stored);
    }
    const refresher = this.#refresher;
    const tokens = this.#tokens;
    if (!refresher || !tokens) return Promise.reject(new Error('no session to refresh'));
    this.#refreshing = refresher(tokens.refreshToken)
      .then((fresh) => {
        this.tokens = fresh;
        return fresh;
      })
      .catch((error: unknown) => {
        // Lost a race with another holder that refreshed at the same moment: keep its pair.
        const stored = this.#storage?.load();
        if (stored && stored.refreshToken !== tokens.refreshToken) {
          this.#adopt(stored);
          return stored;
        }
        this.tokens = undefined;
        throw error;
      })
      .finally(() => {
        this.#refreshing = undefined;
      });
    return this.#refreshing;
  }
}
