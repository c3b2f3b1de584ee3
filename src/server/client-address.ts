import type { HttpRequest } from './http-handler.ts';

/**
 * The address of the client. Behind `trustedProxyHops` reverse proxies, it is the entry
 * of X-Forwarded-For that the outermost trusted proxy appended; entries further left
 * were written by the client itself and are not trusted.
 */
export function clientAddressOf(req: HttpRequest, trustedProxyHops: number): string {
  const peer = normalize(req.socket?.remoteAddress ?? '');
  if (trustedProxyHops === 0) return peer;
  const header = req.headers['x-forwarded-for'];
  const forwarded = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  const hop = forwarded[forwarded.length - trustedProxyHops];
  return hop ? normalize(hop) : peer;
}

function normalize(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
