import { loadConfig } from '../config';
import { EncryptionCodec, parseEncryptionKeys } from './encryption-codec';
import { buildCodecServer } from './server';

/** `npm run codec-server`: the codec server the Temporal UI calls to show decrypted payloads. */
async function main(): Promise<void> {
  const config = loadConfig(['codec', 'codecServer']);
  const c = config.codecServer;
  const jwt = c.CODEC_JWKS_URL && c.CODEC_JWT_ISSUER && c.CODEC_JWT_AUDIENCE ? { jwksUrl: c.CODEC_JWKS_URL, issuer: c.CODEC_JWT_ISSUER, audience: c.CODEC_JWT_AUDIENCE } : undefined;
  const app = buildCodecServer({
    codec: new EncryptionCodec(parseEncryptionKeys(config.codec.PAYLOAD_ENCRYPTION_KEYS)),
    bindHost: c.CODEC_SERVER_HOST,
    corsOrigins: c.CODEC_CORS_ORIGINS,
    allowedHosts: c.CODEC_ALLOWED_HOSTS,
    ...(c.CODEC_SERVER_TOKEN ? { token: c.CODEC_SERVER_TOKEN } : {}),
    ...(jwt ? { jwt } : {}),
    bodyLimit: c.CODEC_SERVER_BODY_LIMIT,
    requestTimeoutMs: c.CODEC_SERVER_REQUEST_TIMEOUT,
  });
  await app.listen({ host: c.CODEC_SERVER_HOST, port: c.CODEC_SERVER_PORT });
  const auth = [c.CODEC_SERVER_TOKEN ? 'static token' : '', jwt ? `access tokens from ${jwt.issuer}` : ''].filter(Boolean).join(' or ') || 'none (loopback only; /encode off)';
  console.log(`codec server on http://${c.CODEC_SERVER_HOST}:${c.CODEC_SERVER_PORT} (CORS: ${c.CODEC_CORS_ORIGINS.join(', ')}; hosts: ${c.CODEC_ALLOWED_HOSTS.join(', ')}; auth: ${auth})`);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}

main().catch((err: unknown) => {
  console.error(`codec server: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
