import pino from 'pino';
import { z } from 'zod';
import { effectiveEnv } from '../../src/config';
import { DEV_API_KEY, DEV_API_SECRET, faultsFromEnv, PortInUseError, startBroker } from './index';

/**
 * Standalone EMQX-compatible dev broker: `tsx devstack/broker/main.ts` (npm run broker).
 * Settings come from the environment over `.stack-state/env`, like every entry point.
 */

const port = z.coerce.number().int().min(0).max(65_535);
const BrokerEnv = z.object({
  BROKER_HOST: z.string().min(1).default('127.0.0.1'),
  MQTT_PORT: port.default(1883),
  MQTT_WS_PORT: port.default(8083),
  EMQX_API_PORT: port.default(18083),
  EMQX_API_KEY: z.string().min(1).default(DEV_API_KEY),
  EMQX_API_SECRET: z.string().min(1).default(DEV_API_SECRET),
  /** `authorization.no_match` the start-up setup leaves; deny, as `device-ops emqx setup` sets. */
  BROKER_AUTHZ_NO_MATCH: z.enum(['allow', 'deny']).default('deny'),
  /** `true`: start like a stock EMQX 5.8 (no authenticator, sources [file], no_match allow). */
  BROKER_STOCK: z.enum(['true', 'false'], 'must be true or false').default('false'),
  BROKER_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'),
});

/** Names the variable and the reason, never the value (the API secret is one of them). */
function readBrokerEnv(env: Record<string, string | undefined>): z.infer<typeof BrokerEnv> {
  const parsed = BrokerEnv.safeParse(env);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
  throw new Error(`invalid broker settings: ${problems.join(', ')}`);
}

async function main(): Promise<void> {
  const env = effectiveEnv();
  const settings = readBrokerEnv(env);
  const broker = await startBroker({
    host: settings.BROKER_HOST,
    mqttPort: settings.MQTT_PORT,
    wsPort: settings.MQTT_WS_PORT,
    apiPort: settings.EMQX_API_PORT,
    apiKey: settings.EMQX_API_KEY,
    apiSecret: settings.EMQX_API_SECRET,
    authzNoMatch: settings.BROKER_AUTHZ_NO_MATCH,
    stock: settings.BROKER_STOCK === 'true',
    faults: faultsFromEnv(env),
    logger: pino({ level: settings.BROKER_LOG_LEVEL }),
  }).catch((err: unknown) => {
    if (err instanceof PortInUseError) throw new Error(`${err.message}; set ${portVariable(err.port, settings)} to use another port`);
    throw err;
  });

  console.log(`EMQX-compatible dev broker (MQTT 3.1.1)
  MQTT            ${broker.mqttUrl}
  MQTT/WebSocket  ${broker.wsUrl}
  REST API        ${broker.apiUrl}  (API key ${settings.EMQX_API_KEY})
  access control  ${settings.BROKER_STOCK === 'true' ? 'stock EMQX 5.8: anyone may connect; run device-ops emqx setup' : `as device-ops emqx setup leaves it (no_match ${settings.BROKER_AUTHZ_NO_MATCH})`}
  faults          ${JSON.stringify(broker.faults.get())}`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: closing the broker`);
    broker.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

function portVariable(taken: number, settings: z.infer<typeof BrokerEnv>): string {
  if (taken === settings.MQTT_PORT) return 'MQTT_PORT';
  if (taken === settings.MQTT_WS_PORT) return 'MQTT_WS_PORT';
  return 'EMQX_API_PORT';
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
