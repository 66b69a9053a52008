import { createPublicKey, verify, type JsonWebKey, type KeyObject } from 'node:crypto';

/**
 * Verifies the access token the Temporal UI passes to the codec server (the UI's "pass access
 * token" codec setting sends the signed-in user's OIDC access token as `Authorization: Bearer`).
 * Only asymmetric signatures are accepted (RS256, ES256: RFC 7518 sections 3.3 and 3.4), with the key
 * named by `kid` taken from the identity provider's JWKS (RFC 7517). `alg: none` and HMAC
 * algorithms are refused, so a public key can never be used as a shared secret.
 */

export interface JwtSettings {
  issuer: string;
  audience: string;
  jwksUrl: string;
  /** Tolerated clock difference for exp/nbf. */
  clockSkewMs?: number;
  /** How long a fetched key set is used before it is fetched again. */
  cacheMs?: number;
}

export class TokenRejected extends Error {
  readonly type = 'TokenRejected';
  constructor(message: string) {
    super(message);
    this.name = 'TokenRejected';
  }
}

const ALGORITHMS = {
  RS256: { kty: 'RSA', dsaEncoding: undefined },
  // JWS carries ECDSA signatures as r||s (RFC 7518 section 3.4), which Node calls ieee-p1363.
  ES256: { kty: 'EC', dsaEncoding: 'ieee-p1363' },
} as const;
type Algorithm = keyof typeof ALGORITHMS;

const JWKS_FETCH_TIMEOUT_MS = 5_000;
/** An unknown `kid` refetches the key set (key rotation), but not more often than this. */
const MIN_REFETCH_MS = 30_000;

function decodeJson(part: string, what: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new TokenRejected(`token ${what} is not base64url JSON`);
}

export function createJwtVerifier(settings: JwtSettings, now: () => number = Date.now): (token: string) => Promise<Record<string, unknown>> {
  const skew = settings.clockSkewMs ?? 60_000;
  const cacheMs = settings.cacheMs ?? 300_000;
  let keys = new Map<string, { key: KeyObject; kty: string }>();
  let fetchedAt = -Infinity;
  let inflight: Promise<void> | undefined;

  const refresh = (): Promise<void> => {
    inflight ??= (async () => {
      try {
        const response = await fetch(settings.jwksUrl, { signal: AbortSignal.timeout(JWKS_FETCH_TIMEOUT_MS) });
        if (!response.ok) throw new TokenRejected(`cannot fetch the JWKS (CODEC_JWKS_URL answered ${response.status})`);
        const body = (await response.json()) as { keys?: (JsonWebKey & { kid?: string; use?: string })[] };
        const next = new Map<string, { key: KeyObject; kty: string }>();
        for (const jwk of body.keys ?? []) {
          if (!jwk.kid || (jwk.use !== undefined && jwk.use !== 'sig') || (jwk.kty !== 'RSA' && jwk.kty !== 'EC')) continue;
          try {
            next.set(jwk.kid, { key: createPublicKey({ key: jwk, format: 'jwk' }), kty: jwk.kty });
          } catch {
            // A key this runtime cannot read is skipped; tokens signed with it are rejected as unknown.
          }
        }
        keys = next;
        fetchedAt = now();
      } catch (err) {
        if (err instanceof TokenRejected) throw err;
        throw new TokenRejected(`cannot fetch the JWKS from CODEC_JWKS_URL: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };

  const keyFor = async (kid: string): Promise<{ key: KeyObject; kty: string }> => {
    if (now() - fetchedAt > cacheMs) await refresh();
    let found = keys.get(kid);
    if (!found && now() - fetchedAt > MIN_REFETCH_MS) {
      await refresh();
      found = keys.get(kid);
    }
    if (!found) throw new TokenRejected(`token key "${kid}" is not in the JWKS`);
    return found;
  };

  return async (token) => {
    const parts = token.split('.');
    if (parts.length !== 3) throw new TokenRejected('token is not a JWS compact serialization');
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
    const header = decodeJson(headerPart, 'header');
    const alg = header.alg;
    if (typeof alg !== 'string' || !(alg in ALGORITHMS)) throw new TokenRejected(`token algorithm "${String(alg)}" is not accepted (RS256 or ES256)`);
    if (typeof header.kid !== 'string') throw new TokenRejected('token header has no kid');
    const { key, kty } = await keyFor(header.kid);
    const algorithm = ALGORITHMS[alg as Algorithm];
    if (kty !== algorithm.kty) throw new TokenRejected(`token algorithm ${alg} does not match key type ${kty}`);
    const signed = Buffer.from(`${headerPart}.${payloadPart}`);
    const signature = Buffer.from(signaturePart, 'base64url');
    const valid = verify('sha256', signed, algorithm.dsaEncoding ? { key, dsaEncoding: algorithm.dsaEncoding } : key, signature);
    if (!valid) throw new TokenRejected('token signature does not verify');

    const claims = decodeJson(payloadPart, 'payload');
    if (claims.iss !== settings.issuer) throw new TokenRejected('token issuer is not CODEC_JWT_ISSUER');
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(settings.audience)) throw new TokenRejected('token audience does not include CODEC_JWT_AUDIENCE');
    const nowSeconds = now() / 1_000;
    if (typeof claims.exp !== 'number') throw new TokenRejected('token has no expiry (exp)');
    if (claims.exp + skew / 1_000 < nowSeconds) throw new TokenRejected('token has expired');
    if (typeof claims.nbf === 'number' && claims.nbf - skew / 1_000 > nowSeconds) throw new TokenRejected('token is not valid yet (nbf)');
    return claims;
  };
}
