import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

/**
 * AES-256-GCM payload codec: every payload in workflow history (inputs, results, signals, updates,
 * memo, heartbeats, failures) is stored encrypted, so device passwords never reach the Temporal
 * server in plaintext. The key id travels in the payload metadata, so keys can rotate: the first key
 * encrypts, every listed key decrypts.
 */

export const ENCRYPTED_ENCODING = 'binary/encrypted';
const METADATA_ENCODING_KEY = 'encoding';
const METADATA_KEY_ID = 'encryption-key-id';
const IV_LENGTH = 12;
const TAG_LENGTH = 16;

export interface EncryptionKey {
  id: string;
  key: Buffer;
}

export class CodecKeyError extends Error {
  readonly type = 'CodecKeyError';
  constructor(message: string) {
    super(message);
    this.name = 'CodecKeyError';
  }
}

/** Parses `id:base64key[,id:base64key...]`; errors name the entry, never the key material. */
export function parseEncryptionKeys(text: string): EncryptionKey[] {
  const keys = text
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry, index) => {
      const colon = entry.indexOf(':');
      if (colon <= 0) throw new CodecKeyError(`PAYLOAD_ENCRYPTION_KEYS entry ${index + 1}: must be id:base64key`);
      const id = entry.slice(0, colon);
      const key = Buffer.from(entry.slice(colon + 1), 'base64');
      if (key.length !== 32) throw new CodecKeyError(`PAYLOAD_ENCRYPTION_KEYS key "${id}": must be 32 bytes (AES-256), base64`);
      return { id, key };
    });
  if (keys.length === 0) throw new CodecKeyError('PAYLOAD_ENCRYPTION_KEYS: at least one key is required');
  const ids = new Set(keys.map((k) => k.id));
  if (ids.size !== keys.length) throw new CodecKeyError('PAYLOAD_ENCRYPTION_KEYS: key ids must be unique');
  return keys;
}

/** Runs synchronous crypto work and reports its errors as a rejection, as the codec contract expects. */
function settle<T>(work: () => T): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

export class EncryptionCodec implements PayloadCodec {
  private readonly byId: Map<string, Buffer>;
  private readonly encryptWith: EncryptionKey;

  constructor(keys: EncryptionKey[]) {
    const [first] = keys;
    if (!first) throw new CodecKeyError('EncryptionCodec needs at least one key');
    this.encryptWith = first;
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  encode(payloads: Payload[]): Promise<Payload[]> {
    return settle(() => payloads.map((payload) => this.encrypt(payload)));
  }

  decode(payloads: Payload[]): Promise<Payload[]> {
    return settle(() => payloads.map((payload) => this.decrypt(payload)));
  }

  private encrypt(payload: Payload): Payload {
    const plain = temporal.api.common.v1.Payload.encode(payload).finish();
    const iv = randomBytes(IV_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', this.encryptWith.key, iv);
    const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return {
      metadata: {
        [METADATA_ENCODING_KEY]: Buffer.from(ENCRYPTED_ENCODING),
        [METADATA_KEY_ID]: Buffer.from(this.encryptWith.id),
      },
      data,
    };
  }

  private decrypt(payload: Payload): Payload {
    const encoding = payload.metadata?.[METADATA_ENCODING_KEY];
    if (!encoding || Buffer.from(encoding).toString() !== ENCRYPTED_ENCODING) return payload;
    const keyIdBytes = payload.metadata?.[METADATA_KEY_ID];
    const keyId = keyIdBytes ? Buffer.from(keyIdBytes).toString() : '';
    const key = this.byId.get(keyId);
    if (!key) throw new CodecKeyError(`no decryption key with id "${keyId}" (add it to PAYLOAD_ENCRYPTION_KEYS)`);
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < IV_LENGTH + TAG_LENGTH) throw new CodecKeyError('encrypted payload is truncated');
    const iv = data.subarray(0, IV_LENGTH);
    const tag = data.subarray(data.length - TAG_LENGTH);
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAuthTag(tag);
    const plain = Buffer.concat([decipher.update(data.subarray(IV_LENGTH, data.length - TAG_LENGTH)), decipher.final()]);
    return temporal.api.common.v1.Payload.decode(plain);
  }
}
