import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { EncryptionCodec, ENCRYPTED_ENCODING, parseEncryptionKeys } from '../../src/codec/encryption-codec';

const keyText = (id: string): string => `${id}:${randomBytes(32).toString('base64')}`;

describe('EncryptionCodec', () => {
  it('round-trips payloads and leaves no plaintext in the encoded bytes', async () => {
    const codec = new EncryptionCodec(parseEncryptionKeys(keyText('k1')));
    const payload = defaultPayloadConverter.toPayload({ password: 'super-secret-password' });
    const [encoded] = await codec.encode([payload]);
    expect(Buffer.from(encoded!.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(encoded!.metadata!['encryption-key-id']!).toString()).toBe('k1');
    expect(Buffer.from(encoded!.data!).toString('latin1')).not.toContain('super-secret-password');
    const [decoded] = await codec.decode([encoded!]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ password: 'super-secret-password' });
  });

  it('decrypts with any listed key and encrypts with the first (key rotation)', async () => {
    const oldKey = keyText('old');
    const newKey = keyText('new');
    const before = new EncryptionCodec(parseEncryptionKeys(oldKey));
    const after = new EncryptionCodec(parseEncryptionKeys(`${newKey},${oldKey}`));
    const [old] = await before.encode([defaultPayloadConverter.toPayload('x')]);
    const [decoded] = await after.decode([old!]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toBe('x');
    const [fresh] = await after.encode([defaultPayloadConverter.toPayload('y')]);
    expect(Buffer.from(fresh!.metadata!['encryption-key-id']!).toString()).toBe('new');
    await expect(before.decode([fresh!])).rejects.toThrow(/no decryption key with id "new"/);
  });

  it('passes unencrypted payloads through and rejects tampered ciphertext', async () => {
    const codec = new EncryptionCodec(parseEncryptionKeys(keyText('k1')));
    const plain = defaultPayloadConverter.toPayload(42);
    expect(await codec.decode([plain])).toEqual([plain]);
    const [encoded] = await codec.encode([plain]);
    const data = Buffer.from(encoded!.data!);
    data[20] = (data[20] ?? 0) ^ 0xff;
    await expect(codec.decode([{ ...encoded!, data }])).rejects.toThrow();
  });

  it('rejects malformed keys naming the entry but never the key material', () => {
    expect(() => parseEncryptionKeys('nocolon')).toThrow(/entry 1: must be id:base64key/);
    const short = Buffer.from('short').toString('base64');
    expect(() => parseEncryptionKeys(`k:${short}`)).toThrow(/key "k": must be 32 bytes/);
    try {
      parseEncryptionKeys(`k:${short}`);
    } catch (err) {
      expect((err as Error).message).not.toContain(short);
    }
    const k = keyText('dup');
    expect(() => parseEncryptionKeys(`${k},${k}`)).toThrow(/unique/);
  });
});
