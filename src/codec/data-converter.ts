import path from 'node:path';
import type { DataConverter } from '@temporalio/common';
import { projectRoot } from '../config';
import { EncryptionCodec, parseEncryptionKeys } from './encryption-codec';

export function failureConverterPath(): string {
  return path.join(projectRoot(), 'src', 'codec', 'failure-converter.cjs');
}

/** The data converter every client and worker uses: encrypted payloads and encrypted failure messages. */
export function createDataConverter(payloadEncryptionKeys: string): DataConverter {
  return {
    payloadCodecs: [new EncryptionCodec(parseEncryptionKeys(payloadEncryptionKeys))],
    failureConverterPath: failureConverterPath(),
  };
}
