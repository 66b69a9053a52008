import { loadConfig } from '../config';
import { EncryptionCodec, parseEncryptionKeys } from './encryption-codec';
import { buildCodecServer } from './server';

/** `npm run codec-server`: the codec server the Temporal UI calls to show decrypted payloads. */
async function main(): Promise<void> {
  const config = loadConfig(['codec', 'codecServer']);
  const { CODEC_SERVER_HOST: host, CODEC_SERVER_PORT: port, CODEC_SERVER_TOKEN: token, CODEC_CORS_ORIGINS: corsOrigins } = config.codecServer;
  const app = buildCodecServer({ codec: new EncryptionCodec(parseEncryptionKeys(config.codec.PAYLOAD_ENCRYPTION_KEYS)), token, corsOrigins });
  await app.listen({ host, port });
  console.log(`codec server on http://${host}:${port} (CORS: ${corsOrigins.join(', ')}; token ${token ? 'required' : 'not required'})`);
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
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
