/**
 * Answers of EMQX 5.8.9 written from its source (each names the function that builds it), and a
 * small HTTP server that replays them, so the project's client is tested against what EMQX sends
 * rather than against the dev broker, which the same project wrote.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createEmqxClient, type EmqxClient } from '../../src/emqx';

const SRC = 'https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src';
export const CLIENTS_ERL = `${SRC}/emqx_mgmt_api_clients.erl`;
export const MGMT_UTIL_ERL = `${SRC}/emqx_mgmt_util.erl`;

/** `client_example/0` of emqx_mgmt_api_clients.erl: a connected MQTT 5 client as `GET /clients` lists it. */
export function connectedClient(clientid: string): Record<string, unknown> {
  return {
    recv_oct: 49,
    expiry_interval: 0,
    created_at: '2024-01-01T12:34:56.789+08:00',
    awaiting_rel_max: 100,
    send_msg: 0,
    enable_authn: true,
    'send_msg.qos2': 0,
    peerport: 52571,
    connected_at: '2024-01-01T12:34:56.789+08:00',
    'send_msg.dropped.too_large': 0,
    inflight_cnt: 0,
    keepalive: 60,
    node: 'emqx@127.0.0.1',
    send_cnt: 4,
    'recv_msg.dropped.await_pubrel_timeout': 0,
    'recv_msg.dropped': 0,
    inflight_max: 32,
    proto_name: 'MQTT',
    'send_msg.dropped.expired': 0,
    awaiting_rel_cnt: 0,
    mqueue_max: 1000,
    send_oct: 31,
    'send_msg.dropped.queue_full': 0,
    mqueue_len: 0,
    heap_size: 610,
    is_persistent: false,
    'send_msg.qos0': 0,
    clean_start: true,
    mountpoint: 'null',
    proto_ver: 5,
    ip_address: '127.0.0.1',
    mqueue_dropped: 0,
    port: 52571,
    listener: 'tcp:default',
    'recv_msg.qos2': 0,
    'recv_msg.qos1': 0,
    is_bridge: false,
    subscriptions_cnt: 1,
    username: null,
    'send_msg.dropped': 0,
    send_pkt: 4,
    subscriptions_max: 'infinity',
    'send_msg.qos1': 0,
    connected: true,
    reductions: 6836,
    mailbox_len: 0,
    clientid,
    recv_msg: 0,
    recv_pkt: 4,
    recv_cnt: 4,
    'recv_msg.qos0': 0,
    durable: false,
  };
}

/**
 * An offline durable session known only by its metadata (`format_persistent_session_info/2`, second
 * clause): no peer recorded, so `ip_address` and `port` are `undefined`, which
 * `result_format_undefined_to_null/1` prints as `null`; there is no `node` or `username` key at all.
 */
export function offlineSessionFromMetadata(clientid: string): Record<string, unknown> {
  return {
    clientid,
    connected: false,
    connected_at: '2024-01-01T12:34:56.789+08:00',
    created_at: '2024-01-01T12:34:56.789+08:00',
    durable: true,
    expiry_interval: 7200,
    heap_size: 0,
    ip_address: null,
    is_expired: false,
    is_persistent: true,
    mqueue_len: 0,
    port: null,
    proto_name: 'MQTT',
    proto_ver: 5,
    subscriptions_cnt: 2,
  };
}

/**
 * An offline durable session with saved channel info (`format_persistent_session_info/2`, first
 * clause): the channel's fields, `connected: false`, and `node` (`last_connected_to`) and
 * `disconnected_at` printed as `null` when the session did not record them.
 */
export function offlineSessionFromChannel(clientid: string): Record<string, unknown> {
  return {
    ...connectedClient(clientid),
    connected: false,
    durable: true,
    is_persistent: true,
    is_expired: false,
    node: null,
    disconnected_at: null,
    mountpoint: null,
    expiry_interval: 7200,
  };
}

/** `format_channel_info(undefined, {ClientId, undefined}, _)`: a durable session missing its metadata. */
export function bareSessionRow(clientid: string): Record<string, unknown> {
  return { clientid };
}

export interface SubscribeRequestItem {
  topic: string;
  qos?: number;
  nl?: number;
  rap?: number;
  rh?: number;
}

/** The request item after EMQX's hocon schema filled the defaults (`fields(subscribe)`). */
function withDefaults(item: SubscribeRequestItem): { qos: number; nl: number; rap: number; rh: number } {
  return { qos: item.qos ?? 0, nl: item.nl ?? 0, rap: item.rap ?? 0, rh: item.rh ?? 0 };
}

/** One success of `do_subscribe/3`: the options plus `node`, `clientid` and `topic`. */
export function subscribeSuccess(clientid: string, item: SubscribeRequestItem): Record<string, unknown> {
  return { ...withDefaults(item), node: 'emqx@127.0.0.1', clientid, topic: item.topic };
}

/**
 * `subscribe_batch/1` through `emqx_mgmt_util:batch_operation/3`: a plain list when nothing failed,
 * else `{succeed, failed}` where each failure is `{data: [ClientID, Topic, Opts], reason: "~p"}` and
 * the failures come out in reverse order (the fold prepends).
 */
export function subscribeBatchBody(
  clientid: string,
  items: readonly SubscribeRequestItem[],
  reasonFor: (item: SubscribeRequestItem) => string | undefined,
): unknown {
  const succeed: Record<string, unknown>[] = [];
  const failed: { data: unknown[]; reason: string }[] = [];
  for (const item of items) {
    const reason = reasonFor(item);
    if (reason === undefined) succeed.push(subscribeSuccess(clientid, item));
    else failed.unshift({ data: [clientid, item.topic, withDefaults(item)], reason });
  }
  return failed.length === 0 ? succeed : { succeed, failed };
}

export const CLIENTID_NOT_FOUND = { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' };

export interface ShapeRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}

export type ShapeHandler = (request: ShapeRequest) => { status: number; body?: unknown };

/** An HTTP server that answers `/api/v5/...` with the handler's status and JSON body. */
export class EmqxShapeServer {
  readonly requests: ShapeRequest[] = [];
  private readonly server: Server;

  private constructor(private readonly handler: ShapeHandler) {
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  static async start(handler: ShapeHandler): Promise<EmqxShapeServer> {
    const shapes = new EmqxShapeServer(handler);
    await new Promise<void>((resolve) => shapes.server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    return shapes;
  }

  get apiUrl(): string {
    const address = this.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    return `http://127.0.0.1:${port}/api/v5`;
  }

  client(): EmqxClient {
    return createEmqxClient({ baseUrl: this.apiUrl, apiKey: 'shape-key', apiSecret: 'shape-secret' });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of req) text += String(chunk);
    const url = new URL(req.url ?? '/', 'http://localhost');
    const request: ShapeRequest = {
      method: req.method ?? '',
      path: url.pathname.replace(/^\/api\/v5/, ''),
      query: url.searchParams,
      body: text === '' ? undefined : (JSON.parse(text) as unknown),
    };
    this.requests.push(request);
    const { status, body } = this.handler(request);
    res.statusCode = status;
    if (body !== undefined) res.setHeader('content-type', 'application/json');
    res.end(body === undefined ? undefined : JSON.stringify(body));
  }
}
