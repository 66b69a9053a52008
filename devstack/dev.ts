import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensureFerretDb, ensureTemporalCli, installAll } from './binaries';
import { assertPortsFree, startFerretDb, startTemporal, type ServiceProcess } from './services';
import { DEV_API_KEY, DEV_API_SECRET, faultsFromEnv, startBroker, type RunningBroker } from './broker';
import { startAppProcesses, startCodecServer, supervise, type AppProcesses, type SupervisionOptions } from './app-processes';
import { ConfigError, devstackEnvPath, parseEnvFile, projectRoot } from '../src/config';

/**
 * `npm run dev`: the whole local stack on one machine, no Docker. Every piece is a real server:
 * the Temporal dev server with its Web UI (SQLite under .stack-state/, so workflows and timers survive
 * a restart), FerretDB (or MONGODB_URI), and the EMQX-compatible broker. It writes the settings it
 * generates to .stack-state/env, which every entry point loads.
 */

const DEV_WEBHOOK_TOKEN = 'device-ops-dev-token';

interface Ports {
  temporal: number;
  temporalUi: number;
  mongo: number;
  mqtt: number;
  mqttWs: number;
  emqxApi: number;
  webhook: number;
  codec: number;
}

/** Each port with the variable that moves it. */
const PORT_VARIABLES: Record<keyof Ports, [string, number]> = {
  temporal: ['TEMPORAL_PORT', 7233],
  temporalUi: ['TEMPORAL_UI_PORT', 8233],
  mongo: ['MONGODB_PORT', 27017],
  mqtt: ['MQTT_PORT', 1883],
  mqttWs: ['MQTT_WS_PORT', 8083],
  emqxApi: ['EMQX_API_PORT', 18083],
  webhook: ['WEBHOOK_PORT', 8080],
  codec: ['CODEC_SERVER_PORT', 8888],
};

/** DEV_ADAPTERS, DEV_WORKERS: how many webhook adapters and workers the stack runs (docs/local-stack.md). */
function readReplicas(env: NodeJS.ProcessEnv): { adapters: number; workers: number } {
  const problems: string[] = [];
  const read = (variable: string): number => {
    const raw = env[variable];
    const value = raw === undefined || raw === '' ? 1 : Number(raw);
    if (!Number.isInteger(value) || value < 1 || value > 16) problems.push(`${variable}: must be a whole number from 1 to 16`);
    return value;
  };
  const replicas = { adapters: read('DEV_ADAPTERS'), workers: read('DEV_WORKERS') };
  if (problems.length) throw new ConfigError(problems);
  return replicas;
}

function readPorts(env: NodeJS.ProcessEnv): Ports {
  const problems: string[] = [];
  const ports = {} as Ports;
  for (const [key, [variable, fallback]] of Object.entries(PORT_VARIABLES) as [keyof Ports, [string, number]][]) {
    const raw = env[variable];
    const value = raw === undefined ? fallback : Number(raw);
    if (!Number.isInteger(value) || value < 1 || value > 65535) problems.push(`${variable}: must be a port number (1-65535)`);
    ports[key] = value;
  }
  if (problems.length) throw new ConfigError(problems);
  return ports;
}

/** Keeps the payload key across restarts: history encrypted yesterday must still decrypt today. */
function payloadKeys(envFile: string, env: NodeJS.ProcessEnv): string {
  if (env.PAYLOAD_ENCRYPTION_KEYS) return env.PAYLOAD_ENCRYPTION_KEYS;
  if (existsSync(envFile)) {
    const previous = parseEnvFile(readFileSync(envFile, 'utf8')).PAYLOAD_ENCRYPTION_KEYS;
    if (previous) return previous;
  }
  return `dev-${randomBytes(3).toString('hex')}:${randomBytes(32).toString('base64')}`;
}

function writeEnvFile(file: string, settings: Record<string, string>): void {
  const lines = [
    '# Written by `npm run dev`; every entry point loads it. Real environment variables take precedence.',
    ...Object.entries(settings).map(([k, v]) => `${k}=${v}`),
  ];
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
}

async function main(): Promise<void> {
  const started = Date.now();
  const env = process.env;
  const root = projectRoot();
  const stateDir = path.join(root, '.stack-state');
  const logDir = path.join(stateDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const host = env.DEVSTACK_HOST ?? '127.0.0.1';
  const ports = readPorts(env);
  const replicas = readReplicas(env);
  const externalMongo = env.MONGODB_URI;
  const apiKey = env.EMQX_API_KEY ?? DEV_API_KEY;
  const apiSecret = env.EMQX_API_SECRET ?? DEV_API_SECRET;

  await assertPortsFree(
    host,
    (Object.keys(ports) as (keyof Ports)[]).filter((key) => !(key === 'mongo' && externalMongo)).map((key) => ({ port: ports[key], variable: PORT_VARIABLES[key][0] })),
  );

  const progress = (message: string): void => console.log(`[devstack] ${message}`);
  const [temporalCli, ferretDb] = await installAll([
    ensureTemporalCli(progress),
    externalMongo ? Promise.resolve(undefined) : ensureFerretDb(progress),
  ]);

  const services: ServiceProcess[] = [];
  let apps: AppProcesses | undefined;
  let broker: RunningBroker | undefined;
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    progress('stopping ...');
    await broker?.close();
    await apps?.stop();
    await Promise.all(services.map((s) => s.stop()));
    progress('stopped');
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stopAll().then(
        () => process.exit(0),
        (err: unknown) => {
          console.error(err);
          process.exit(1);
        },
      );
    });
  }

  try {
    progress('starting Temporal, MongoDB-wire store and broker ...');
    const [temporal, mongo, runningBroker] = await Promise.all([
      startTemporal({
        binary: temporalCli,
        host,
        port: ports.temporal,
        uiPort: ports.temporalUi,
        dbFile: path.join(stateDir, 'temporal.sqlite'),
        // The UI (in the browser) asks our codec server to decrypt payloads; the server keeps ciphertext.
        codecEndpoint: `http://${host}:${ports.codec}`,
        namespace: env.TEMPORAL_NAMESPACE ?? 'default',
        logDir,
      }).then((s) => (services.push(s), s)),
      ferretDb
        ? startFerretDb({ binary: ferretDb, host, port: ports.mongo, dataDir: path.join(stateDir, 'ferretdb'), logDir }).then(
            (s) => (services.push(s), s),
          )
        : undefined,
      startBroker({
        host,
        mqttPort: ports.mqtt,
        wsPort: ports.mqttWs,
        apiPort: ports.emqxApi,
        apiKey,
        apiSecret,
        // Ready to use: the broker runs `device-ops emqx setup`'s access-control code at start
        // (no_match deny unless BROKER_AUTHZ_NO_MATCH=allow); BROKER_STOCK=true starts it like a
        // stock EMQX instead, to try `emqx setup` and `doctor` from zero.
        authzNoMatch: env.BROKER_AUTHZ_NO_MATCH === 'allow' ? 'allow' : 'deny',
        stock: env.BROKER_STOCK === 'true',
        faults: faultsFromEnv(env),
      }).then((b) => (broker = b)),
    ]);

    const envFile = devstackEnvPath(env);
    const settings: Record<string, string> = {
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: env.TEMPORAL_NAMESPACE ?? 'default',
      TEMPORAL_TASK_QUEUE: env.TEMPORAL_TASK_QUEUE ?? 'device-ops',
      TEMPORAL_PRESENCE_TASK_QUEUE: env.TEMPORAL_PRESENCE_TASK_QUEUE ?? 'device-ops-presence',
      EMQX_API_URL: runningBroker.apiUrl,
      EMQX_API_KEY: apiKey,
      EMQX_API_SECRET: apiSecret,
      MQTT_URL: runningBroker.mqttUrl,
      MONGODB_URI: externalMongo ?? mongo?.uri ?? '',
      MONGODB_DB: env.MONGODB_DB ?? 'device_ops',
      WEBHOOK_HOST: env.WEBHOOK_HOST ?? host,
      WEBHOOK_PORT: String(ports.webhook),
      WEBHOOK_TOKEN: env.WEBHOOK_TOKEN ?? DEV_WEBHOOK_TOKEN,
      PAYLOAD_ENCRYPTION_KEYS: payloadKeys(envFile, env),
    };
    writeEnvFile(envFile, settings);

    progress('starting the worker and the webhook adapter, and pointing the broker at the adapter ...');
    // A dead worker or adapter is restarted with backoff; one that keeps dying stops the whole stack,
    // saying which, rather than leaving commands such as `provision --wait` waiting for it.
    const supervision: SupervisionOptions = {
      log: progress,
      onGiveUp: (message) => {
        console.error(`[devstack] ${message}; stopping the stack`);
        stopAll().then(
          () => process.exit(1),
          () => process.exit(1),
        );
      },
    };
    apps = await startAppProcesses({ root, logDir, host, webhookPort: ports.webhook, settings, emqxApiUrl: runningBroker.apiUrl, supervision, ...replicas });
    const codecServer = await supervise(() => startCodecServer({ root, logDir, host, port: ports.codec, uiPort: ports.temporalUi, settings }), supervision);
    services.push(codecServer);

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(
      [
        '',
        `emqx-device-ops local stack is up (${seconds}s)`,
        `  Temporal Web UI     http://${host}:${ports.temporalUi}`,
        `  Temporal gRPC       ${temporal.address}  (namespace ${settings.TEMPORAL_NAMESPACE}, task queue ${settings.TEMPORAL_TASK_QUEUE})`,
        `  MongoDB             ${withoutPassword(settings.MONGODB_URI ?? '')}  (database ${settings.MONGODB_DB})${externalMongo ? '  [external MONGODB_URI]' : '  [FerretDB]'}`,
        `  MQTT                ${runningBroker.mqttUrl}`,
        `  MQTT over WebSocket ${runningBroker.wsUrl}`,
        // The well-known dev secret is shown; one given in EMQX_API_SECRET is not.
        `  EMQX REST API       ${runningBroker.apiUrl}  (API key ${apiKey} / secret ${apiSecret === DEV_API_SECRET ? apiSecret : 'from EMQX_API_SECRET'})`,
        `  webhook adapter     ${apps.webhookUrl}  (EMQX rule ${apps.ruleId} posts device events to it${apps.proxy ? `; round-robin over ${replicas.adapters} adapters` : ''})`,
        `  worker              ${replicas.workers > 1 ? `${replicas.workers} processes, ` : ''}task queues ${settings.TEMPORAL_TASK_QUEUE} (operations), ${settings.TEMPORAL_PRESENCE_TASK_QUEUE} (presence)`,
        `  codec server        http://${host}:${ports.codec}  (the Temporal UI decodes payloads through it)`,
        `  settings written to ${envFile}`,
        `  logs in ${logDir}`,
        'Press Ctrl-C to stop everything.',
      ].join('\n'),
    );
  } catch (err) {
    await stopAll();
    throw err;
  }
}

main().catch((err: unknown) => {
  console.error(`[devstack] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});

/** A connection string to print: any password in it is replaced. */
function withoutPassword(uri: string): string {
  try {
    const url = new URL(uri);
    if (!url.password) return uri;
    url.password = '***';
    return url.toString();
  } catch {
    return uri.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}
