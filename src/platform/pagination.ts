import { createHash } from 'node:crypto';
import { CursorError, DriverException, type EntityName, type FilterQuery, type QueryOrderMap } from '@mikro-orm/core';
import type { EntityManager } from './db/orm.ts';
import { invalidField } from './domain-errors.ts';

export const defaultPageSize = 50;
export const maxPageSize = 1000;

export interface PageRequest {
  pageSize: number;
  pageToken: string;
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** AIP-158: 0 means the default, above the maximum is clamped, negative is an error. */
export function effectivePageSize(requested: number): number {
  if (requested < 0) throw invalidField('page_size', 'must not be negative');
  if (requested === 0) return defaultPageSize;
  return Math.min(requested, maxPageSize);
}

/**
 * AIP-132 order_by: the ordering `orderBy` names among `orderings`, case and spacing
 * ignored, or InvalidArgument on order_by with `description` (what the list accepts).
 */
export function parseOrderBy<T>(orderBy: string, orderings: Record<string, QueryOrderMap<T>>, description: string): QueryOrderMap<T> {
  const order = orderings[orderBy.trim().toLowerCase().replace(/\s+/g, ' ')];
  if (!order) throw invalidField('order_by', description);
  return order;
}

interface PageTokenBody {
  /** Keyset cursor of the last item of the previous page. */
  c: string;
  /** Fingerprint of the query the token belongs to. */
  q: string;
}

function isPageTokenBody(body: unknown): body is PageTokenBody {
  return (
    typeof body === 'object' &&
    body !== null &&
    typeof (body as PageTokenBody).c === 'string' &&
    typeof (body as PageTokenBody).q === 'string'
  );
}

function fingerprint(query: unknown): string {
  return createHash('sha256').update(JSON.stringify(query)).digest('base64url').slice(0, 16);
}

export function encodePageToken(cursor: string, query: unknown): string {
  const body: PageTokenBody = { c: cursor, q: fingerprint(query) };
  return Buffer.from(JSON.stringify(body)).toString('base64url');
}

/**
 * The keyset cursor inside a page token. The token also records which query it belongs
 * to: reusing it with other filters is InvalidArgument rather than a silently wrong page.
 */
export function decodePageToken(token: string, query: unknown): string | undefined {
  if (token === '') return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalidField('page_token', 'is not a token from a previous page');
  }
  if (!isPageTokenBody(body)) {
    throw invalidField('page_token', 'is not a token from a previous page');
  }
  if (body.q !== fingerprint(query)) {
    throw invalidField('page_token', 'belongs to a different query: the filters and order must not change between pages');
  }
  return body.c;
}

export interface KeysetQuery<T extends object> {
  where: FilterQuery<T>;
  /** Must end with a unique column (the id) so that the order is total. */
  orderBy: QueryOrderMap<T>;
  /** Everything that defines the result set: filters and order, not the page size. */
  query: unknown;
  page: PageRequest;
  populate?: string[];
}

/** One page of a keyset-paginated query (never OFFSET: pages stay fast and stable). */
export async function findPage<T extends object>(em: EntityManager, entity: EntityName<T>, spec: KeysetQuery<T>): Promise<Page<T>> {
  const first = effectivePageSize(spec.page.pageSize);
  const after = decodePageToken(spec.page.pageToken, spec.query);
  let cursor: Awaited<ReturnType<typeof em.findByCursor<T>>>;
  try {
    cursor = await em.findByCursor(entity, {
      where: spec.where,
      orderBy: spec.orderBy,
      first,
      ...(after === undefined ? {} : { after }),
      includeCount: false,
      ...(spec.populate ? { populate: spec.populate as never } : {}),
    } as never);
  } catch (error) {
    // A cursor whose values do not fit the columns (edited by hand) is the token's fault.
    if (after !== undefined && (error instanceof DriverException || error instanceof CursorError)) {
      throw invalidField('page_token', 'is not a token from a previous page');
    }
    throw error;
  }
  return {
    items: cursor.items as T[],
    nextPageToken: cursor.hasNextPage && cursor.endCursor ? encodePageToken(cursor.endCursor, spec.query) : '',
  };
}
