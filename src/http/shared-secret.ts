import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Shared-secret checks for the HTTP endpoints (webhook adapter, codec server). Secrets are compared
 * in constant time over SHA-256 digests, so neither the content nor the length of the expected
 * secret leaks through timing.
 */
export function secretMatcher(expected: string): (given: string | undefined) => boolean {
  const want = digest(expected);
  return (given) => given !== undefined && timingSafeEqual(digest(given), want);
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(authorization: string | undefined): string | undefined {
  return typeof authorization === 'string' ? /^Bearer\s+(\S.*)$/i.exec(authorization.trim())?.[1] : undefined;
}

/**
 * The shared secret EMQX sends with each event (EMQX does not sign the bodies of HTTP-action requests), as
 * `Authorization: Bearer <token>` or `x-emqx-token: <token>`.
 */
export function createTokenCheck(expected: string): (headers: IncomingHttpHeaders) => boolean {
  const matches = secretMatcher(expected);
  return (headers) => {
    const header = headers['x-emqx-token'];
    // Both are checked, so the time taken does not tell which header was tried.
    const viaAuthorization = matches(bearerToken(headers.authorization));
    const viaHeader = matches(typeof header === 'string' ? header : undefined);
    return viaAuthorization || viaHeader;
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
