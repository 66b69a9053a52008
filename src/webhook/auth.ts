import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * The shared secret EMQX sends with each event (reference §8.2: EMQX does not sign bodies), as
 * `Authorization: Bearer <token>` or `x-emqx-token: <token>`. Compared in constant time over
 * SHA-256 digests, so neither the content nor the length of the token leaks through timing.
 */
export function createTokenCheck(expected: string): (headers: IncomingHttpHeaders) => boolean {
  const want = digest(expected);
  const matches = (given: string | undefined): boolean => given !== undefined && timingSafeEqual(digest(given), want);
  return (headers) => {
    const authorization = typeof headers.authorization === 'string' ? /^Bearer\s+(\S.*)$/i.exec(headers.authorization.trim())?.[1] : undefined;
    const header = headers['x-emqx-token'];
    const token = typeof header === 'string' ? header : undefined;
    // Both are checked, so the time taken does not tell which header was tried.
    const viaAuthorization = matches(authorization);
    const viaHeader = matches(token);
    return viaAuthorization || viaHeader;
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
