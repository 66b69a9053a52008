import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net from 'node:net';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll } from 'vitest';
import { startBroker, type BrokerOptions, type RunningBroker } from '../../devstack/broker';

/**
 * Helpers for the dev broker's tests: a broker on free ports, a small REST client, MQTT clients
 * that never reconnect on their own, and a local HTTP receiver for webhooks. Polling uses the
 * harness' `waitFor` (test/harness), never fixed sleeps.
 */

export { waitFor } from '../harness';

export const API_KEY = 'broker-test-key';
export const API_SECRET = 'broker-test-secret';
export const AUTHN_USERS = '/authentication/password_based%3Abuilt_in_database/users';
export const AUTHZ_RULES = '/authorization/sources/built_in_database/rules';

export interface ApiResponse {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- response shapes are asserted by each test
  body: any;
}

export class BrokerApi {
  constructor(
    readonly baseUrl: string,
    private readonly authorization: string | null = basicAuth(API_KEY, API_SECRET),
  ) {}

  /** The same API with another Authorization header, or none (`null`). */
  withAuthorization(authorization: string | null): BrokerApi {
    return new BrokerApi(this.baseUrl, authorization);
  }

  get = (path: string): Promise<ApiResponse> => this.request('GET', path);
  delete = (path: string): Promise<ApiResponse> => this.request('DELETE', path);
  post = (path: string, body?: unknown): Promise<ApiResponse> => this.request('POST', path, body);
  put = (path: string, body?: unknown): Promise<ApiResponse> => this.request('PUT', path, body);

  async request(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.authorization !== null) headers.authorization = this.authorization;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    if ((response.headers.get('content-type') ?? '').includes('application/json') && text !== '') parsed = JSON.parse(text);
    return { status: response.status, headers: response.headers, body: parsed };
  }
}

export function basicAuth(key: string, secret: string): string {
  return `Basic ${Buffer.from(`${key}:${secret}`).toString('base64')}`;
}

export async function startTestBroker(options: Partial<BrokerOptions> = {}): Promise<{ broker: RunningBroker; api: BrokerApi }> {
  const broker = await startBroker({ apiKey: API_KEY, apiSecret: API_SECRET, ...options });
  return { broker, api: new BrokerApi(broker.apiUrl) };
}

/** A broker for the whole test file: started before its tests, closed after them. */
export function brokerForFile(options: Partial<BrokerOptions> = {}): { readonly broker: RunningBroker; readonly api: BrokerApi } {
  let started: { broker: RunningBroker; api: BrokerApi } | undefined;
  const current = () => {
    if (!started) throw new Error('the broker starts in beforeAll');
    return started;
  };
  beforeAll(async () => {
    started = await startTestBroker(options);
  });
  afterAll(async () => {
    await started?.broker.close();
  });
  return {
    get broker() {
      return current().broker;
    },
    get api() {
      return current().api;
    },
  };
}

/** A fresh name per test so tests in one file never share client ids, users or topics. */
let sequence = 0;
export function unique(prefix: string): string {
  sequence++;
  return `${prefix}-${process.pid}-${sequence}`;
}

export async function createUser(api: BrokerApi, userId: string, password: string, isSuperuser = false): Promise<void> {
  const response = await api.post(AUTHN_USERS, { user_id: userId, password, is_superuser: isSuperuser });
  if (response.status !== 201) throw new Error(`creating user failed: ${response.status}`);
}

/** An MQTT 3.1.1 client that does not reconnect by itself. */
export function connectClient(url: string, options: IClientOptions): Promise<MqttClient> {
  return connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options });
}

/** Connects expecting a refusal; resolves with the CONNACK return code. */
export async function connectRefusal(url: string, options: IClientOptions): Promise<number> {
  try {
    const client = await connectClient(url, options);
    await client.endAsync();
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
  throw new Error('the connection was accepted');
}

/**
 * Subscribes and returns the granted QoS per topic filter, 128 for refused ones (mqtt.js rejects
 * the whole call when any filter is refused; the SUBACK is still on the error).
 */
export async function subscribeGranted(client: MqttClient, filters: Record<string, 0 | 1 | 2>): Promise<Record<string, number>> {
  const topics = Object.keys(filters);
  const request = Object.fromEntries(topics.map((t) => [t, { qos: filters[t] ?? 0 }]));
  try {
    const granted = await client.subscribeAsync(request);
    return Object.fromEntries(granted.map((g) => [g.topic, g.qos]));
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw err;
    return Object.fromEntries(topics.map((t, i) => [t, granted[i] ?? -1]));
  }
}

export interface ReceivedMessage {
  topic: string;
  payload: string;
  retain: boolean;
}

export function collectMessages(client: MqttClient): ReceivedMessage[] {
  const messages: ReceivedMessage[] = [];
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload: payload.toString(), retain: packet.retain }));
  return messages;
}

/**
 * An MQTT 3.1.1 CONNECT packet, for tests that need a connection that behaves badly (goes
 * silent, or drops the socket without DISCONNECT), which mqtt.js will not do.
 */
export function rawConnectPacket(options: { clientId: string; username?: string; password?: string; keepalive: number }): Buffer {
  const field = (text: string): Buffer => {
    const bytes = Buffer.from(text, 'utf8');
    const length = Buffer.alloc(2);
    length.writeUInt16BE(bytes.length);
    return Buffer.concat([length, bytes]);
  };
  let flags = 0x02;
  if (options.username !== undefined) flags |= 0x80;
  if (options.password !== undefined) flags |= 0x40;
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(options.keepalive);
  const body = Buffer.concat([
    field('MQTT'),
    Buffer.from([0x04, flags]),
    keepalive,
    field(options.clientId),
    ...(options.username !== undefined ? [field(options.username)] : []),
    ...(options.password !== undefined ? [field(options.password)] : []),
  ]);
  if (body.length > 127) throw new Error('keep raw CONNECT packets short');
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** Opens a TCP connection, sends a CONNECT and resolves once the CONNACK arrives. */
export async function rawConnect(
  port: number,
  options: { clientId: string; username?: string; password?: string; keepalive: number },
): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => socket.write(rawConnectPacket(options)));
    socket.once('data', (data) => (data[0] === 0x20 && data[3] === 0 ? resolve() : reject(new Error('connection refused'))));
  });
  socket.on('error', () => undefined);
  return socket;
}

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- event bodies are asserted by each test
  body: any;
}

/**
 * A local HTTP endpoint that records every request. `respond` picks the status for each request
 * (default 200), so tests can make it fail a few times first.
 */
export class WebhookReceiver {
  readonly requests: ReceivedRequest[] = [];
  respond: (request: ReceivedRequest, attempt: number) => number = () => 200;
  private readonly server: Server;

  private constructor() {
    this.server = createServer((req, res) => this.handle(req, res));
  }

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    await new Promise<void>((resolve) => receiver.server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    return receiver;
  }

  get url(): string {
    const address = this.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    return `http://127.0.0.1:${port}`;
  }

  /** Requests whose JSON body has `event` equal to the given name (and matching `clientid`, if given). */
  events(event: string, clientid?: string): ReceivedRequest[] {
    return this.requests.filter((r) => r.body?.event === event && (clientid === undefined || r.body?.clientid === clientid));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // keep the raw text
      }
      const request: ReceivedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body };
      this.requests.push(request);
      const attempt = this.requests.filter((r) => JSON.stringify(r.body) === JSON.stringify(body)).length;
      res.statusCode = this.respond(request, attempt);
      res.end();
    });
  }
}

/** Creates an HTTP connector, an HTTP action and a rule that sends the given FROM topics to `receiverUrl`. */
export async function wireWebhook(
  api: BrokerApi,
  options: { name: string; receiverUrl: string; from: string[]; actionParameters?: Record<string, unknown>; connectorHeaders?: Record<string, string> },
): Promise<{ actionId: string; ruleId: string }> {
  const connector = await api.post('/connectors', {
    type: 'http',
    name: options.name,
    url: options.receiverUrl,
    headers: options.connectorHeaders ?? {},
  });
  if (connector.status !== 201) throw new Error(`connector: ${connector.status} ${JSON.stringify(connector.body)}`);
  const action = await api.post('/actions', {
    type: 'http',
    name: options.name,
    connector: options.name,
    parameters: { path: '/emqx/events', method: 'post', ...(options.actionParameters ?? {}) },
  });
  if (action.status !== 201) throw new Error(`action: ${action.status} ${JSON.stringify(action.body)}`);
  const from = options.from.map((t) => `"${t}"`).join(', ');
  const rule = await api.post('/rules', { id: options.name, sql: `SELECT * FROM ${from}`, actions: [`http:${options.name}`] });
  if (rule.status !== 201) throw new Error(`rule: ${rule.status} ${JSON.stringify(rule.body)}`);
  return { actionId: `http:${options.name}`, ruleId: options.name };
}
