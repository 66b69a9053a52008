import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseDurationMs, parseEnvFile } from '../../src/config';

describe('loadConfig', () => {
  it('applies the defaults', () => {
    const config = loadConfig(['temporal', 'mongo', 'alarm'], {});
    expect(config.temporal).toMatchObject({ TEMPORAL_ADDRESS: '127.0.0.1:7233', TEMPORAL_NAMESPACE: 'default', TEMPORAL_TASK_QUEUE: 'device-ops' });
    expect(config.mongo).toEqual({ MONGODB_URI: 'mongodb://127.0.0.1:27017', MONGODB_DB: 'device_ops' });
    expect(config.alarm).toMatchObject({ ALARM_GRACE_PERIOD: 120_000, ALARM_ESCALATION_STEPS: [900_000, 3_600_000] });
  });

  it('lists every missing or invalid variable at once, without their values', () => {
    let error: unknown;
    try {
      loadConfig(['temporal', 'emqx', 'webhook'], { TEMPORAL_ADDRESS: 'nope', EMQX_API_URL: 'ftp://x', WEBHOOK_TOKEN: 'short-secret' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        'TEMPORAL_ADDRESS: must be host:port',
        'EMQX_API_URL: must be an http(s) URL',
        'EMQX_API_KEY: is required',
        'EMQX_API_SECRET: is required',
        'WEBHOOK_TOKEN: must be at least 16 characters',
      ]),
    );
    expect((error as Error).message).not.toContain('short-secret');
  });

  it('parses durations and env files', () => {
    expect(parseDurationMs('90s')).toBe(90_000);
    expect(parseDurationMs('2m')).toBe(120_000);
    expect(parseDurationMs('1500')).toBe(1500);
    expect(() => parseDurationMs('soon')).toThrow(/invalid duration/);
    expect(parseEnvFile('# c\nA=1\n\nB = x=y\nbad\n')).toEqual({ A: '1', B: 'x=y' });
  });
});
