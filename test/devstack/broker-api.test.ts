import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { faultsFromEnv, startBroker, type RunningBroker } from '../../devstack/broker';
import { API_KEY, API_SECRET, basicAuth, BrokerApi, startTestBroker } from './broker-helpers';

/** The REST API's conventions: Basic auth, error bodies, status, fault injection and ports. */

let broker: RunningBroker;
let api: BrokerApi;

beforeAll(async () => {
  ({ broker, api } = await startTestBroker());
});

afterAll(async () => {
  await broker.close();
});

describe('API authentication', () => {
  it('answers 401 AUTHORIZATION_HEADER_ERROR when the Authorization header is missing', async () => {
    const response = await api.withAuthorization(null).get('/clients');
    expect(response.status).toBe(401);
    expect(response.body.code).toBe('AUTHORIZATION_HEADER_ERROR');
    expect(typeof response.body.message).toBe('string');
  });

  it('answers 401 BAD_API_KEY_OR_SECRET with the emqx-dashboard realm for a wrong secret', async () => {
    const response = await api.withAuthorization(basicAuth(API_KEY, 'wrong')).get('/clients');
    expect(response.status).toBe(401);
    expect(response.body).toEqual({ code: 'BAD_API_KEY_OR_SECRET', message: 'Check api_key/api_secret' });
    expect(response.headers.get('www-authenticate')).toBe('Basic Realm="emqx-dashboard"');
  });

  it('rejects an unknown key and never echoes the secret', async () => {
    const response = await api.withAuthorization(basicAuth('nobody', API_SECRET)).get('/nodes');
    expect(response.status).toBe(401);
    expect(JSON.stringify(response.body)).not.toContain(API_SECRET);
  });

  it('serves GET /api/v5/status without auth, as text and as JSON', async () => {
    const anonymous = api.withAuthorization(null);
    const text = await anonymous.get('/status');
    expect(text.status).toBe(200);
    expect(text.body).toContain('is running');
    const json = await anonymous.get('/status?format=json');
    expect(json.status).toBe(200);
    expect(json.body).toMatchObject({ node_name: 'emqx@127.0.0.1', broker_status: 'started' });
  });
});

describe('API conventions', () => {
  it('answers unknown paths with an EMQX error body', async () => {
    const response = await api.get('/no/such/endpoint');
    expect(response.status).toBe(404);
    expect(response.body.code).toBe('NOT_FOUND');
  });

  it('rejects out-of-range page and limit with INVALID_PARAMETER page_limit_invalid', async () => {
    for (const query of ['page=0', 'limit=0', 'limit=10001']) {
      const response = await api.get(`/clients?${query}`);
      expect(response.status, query).toBe(400);
      expect(response.body).toEqual({ code: 'INVALID_PARAMETER', message: 'page_limit_invalid' });
    }
    expect((await api.get('/clients?limit=10000')).status).toBe(200);
  });

  it('answers malformed JSON with 400 BAD_REQUEST without echoing the body', async () => {
    const response = await fetch(`${broker.apiUrl}/authentication/password_based%3Abuilt_in_database/users`, {
      method: 'POST',
      headers: { authorization: basicAuth(API_KEY, API_SECRET), 'content-type': 'application/json' },
      body: '{"user_id":"x","password":"s3cret-value"',
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { code: string; message: string };
    expect(body.code).toBe('BAD_REQUEST');
    expect(body.message).not.toContain('s3cret-value');
  });

  it('accepts a DELETE that carries a JSON content type but no body', async () => {
    const response = await fetch(`${broker.apiUrl}/authorization/cache`, {
      method: 'DELETE',
      headers: { authorization: basicAuth(API_KEY, API_SECRET), 'content-type': 'application/json' },
    });
    expect(response.status).toBe(204);
  });
});

describe('REST fault injection', () => {
  it('exposes the fault settings on GET and PUT /devstack/faults with the same Basic auth', async () => {
    const devstack = new BrokerApi(broker.apiUrl.replace('/api/v5', ''));
    expect((await devstack.withAuthorization(null).get('/devstack/faults')).status).toBe(401);
    const initial = await devstack.get('/devstack/faults');
    expect(initial.body).toEqual({
      restFailureRate: 0,
      restLatencyMs: 0,
      restAnswerDelayMs: 0,
      webhookDropRate: 0,
      webhookDuplicateRate: 0,
      webhookReorder: false,
    });
    const updated = await devstack.put('/devstack/faults', { restLatencyMs: 5 });
    expect(updated.status).toBe(200);
    expect(updated.body.restLatencyMs).toBe(5);
    expect(broker.faults.get().restLatencyMs).toBe(5);
    const invalid = await devstack.put('/devstack/faults', { restFailureRate: 2 });
    expect(invalid.status).toBe(400);
    expect(invalid.body.code).toBe('BAD_REQUEST');
    expect(invalid.body.message).toContain('restFailureRate');
    broker.faults.reset();
    expect(broker.faults.get().restLatencyMs).toBe(0);
  });

  it('fails every call with 503 at rate 1, except /status and the fault endpoint', async () => {
    broker.faults.set({ restFailureRate: 1 });
    try {
      const response = await api.get('/nodes');
      expect(response.status).toBe(503);
      expect(response.body).toEqual({ code: 'SERVICE_UNAVAILABLE', message: 'injected fault' });
      expect((await api.get('/status')).status).toBe(200);
      const devstack = new BrokerApi(broker.apiUrl.replace('/api/v5', ''));
      expect((await devstack.get('/devstack/faults')).status).toBe(200);
    } finally {
      broker.faults.reset();
    }
  });

  it('fails about the configured fraction of calls', async () => {
    broker.faults.set({ restFailureRate: 0.5 });
    try {
      const statuses = await Promise.all(Array.from({ length: 200 }, () => api.get('/nodes').then((r) => r.status)));
      const failures = statuses.filter((s) => s === 503).length;
      expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
      // Binomial(200, 0.5): mean 100, standard deviation about 7.
      expect(failures).toBeGreaterThan(60);
      expect(failures).toBeLessThan(140);
    } finally {
      broker.faults.reset();
    }
  });

  it('adds the configured latency to each call', async () => {
    broker.faults.set({ restLatencyMs: 150 });
    try {
      const started = Date.now();
      expect((await api.get('/nodes')).status).toBe(200);
      expect(Date.now() - started).toBeGreaterThanOrEqual(145);
    } finally {
      broker.faults.reset();
    }
  });
});

describe('faultsFromEnv', () => {
  it('reads every DEVSTACK_FAULT_* variable', () => {
    expect(
      faultsFromEnv({
        DEVSTACK_FAULT_REST_FAILURE_RATE: '0.25',
        DEVSTACK_FAULT_REST_LATENCY_MS: '40',
        DEVSTACK_FAULT_WEBHOOK_DROP_RATE: '0.1',
        DEVSTACK_FAULT_WEBHOOK_DUPLICATE_RATE: '0',
        DEVSTACK_FAULT_WEBHOOK_REORDER: 'true',
      }),
    ).toEqual({ restFailureRate: 0.25, restLatencyMs: 40, webhookDropRate: 0.1, webhookDuplicateRate: 0, webhookReorder: true });
    expect(faultsFromEnv({})).toEqual({});
  });

  it('throws naming the variable for a bad value', () => {
    expect(() => faultsFromEnv({ DEVSTACK_FAULT_WEBHOOK_DROP_RATE: '1.5' })).toThrow(/DEVSTACK_FAULT_WEBHOOK_DROP_RATE/);
    expect(() => faultsFromEnv({ DEVSTACK_FAULT_REST_LATENCY_MS: 'soon' })).toThrow(/DEVSTACK_FAULT_REST_LATENCY_MS/);
    expect(() => faultsFromEnv({ DEVSTACK_FAULT_WEBHOOK_REORDER: 'maybe' })).toThrow(/DEVSTACK_FAULT_WEBHOOK_REORDER/);
  });
});

describe('startBroker', () => {
  it('rejects with an EADDRINUSE error naming a port that is taken', async () => {
    const attempt = startBroker({ apiKey: API_KEY, apiSecret: API_SECRET, mqttPort: broker.mqttPort });
    await expect(attempt).rejects.toMatchObject({
      code: 'EADDRINUSE',
      port: broker.mqttPort,
      message: `port ${broker.mqttPort} is already in use`,
    });
  });

  it('reports its endpoints and closes idempotently', async () => {
    const other = await startBroker({ apiKey: API_KEY, apiSecret: API_SECRET });
    expect(other.mqttUrl).toBe(`mqtt://127.0.0.1:${other.mqttPort}`);
    expect(other.wsUrl).toBe(`ws://127.0.0.1:${other.wsPort}/mqtt`);
    expect(other.apiUrl).toBe(`http://127.0.0.1:${other.apiPort}/api/v5`);
    await other.close();
    await other.close();
    await expect(fetch(`${other.apiUrl}/status`)).rejects.toThrow();
  });
});
