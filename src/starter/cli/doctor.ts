import { Connection } from '@temporalio/client';
import { MongoClient } from 'mongodb';
import { request } from 'undici';
import { z } from 'zod';
import { ConfigError, loadConfig, temporalConnectionOptions } from '../../config';
import { ALL_SEARCH_ATTRIBUTES } from '../../domain/search-attributes';
import {
  AUTHENTICATOR_ID,
  authenticatorProblems,
  createEmqxClientFromConfig,
  EmqxUnauthorizedError,
  type EmqxClient,
} from '../../emqx';
import { fingerprintMatches } from '../../emqx/event-webhook';

/**
 * `device-ops doctor`: every piece the project needs, checked one by one, each with a fix. A check
 * that cannot run (its configuration is invalid, or what it depends on failed) fails too, saying why.
 */

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do; present unless the check passed. */
  fix?: string;
}

const SETUP = 'run `device-ops emqx setup`';
const PROBE_TIMEOUT_MS = 5_000;
const WEBHOOK_NAME = 'device_ops';

const ok = (name: string, detail: string): CheckResult => ({ name, status: 'ok', detail });
const fail = (name: string, detail: string, fix: string): CheckResult => ({ name, status: 'fail', detail, fix });
const warn = (name: string, detail: string, fix: string): CheckResult => ({ name, status: 'warn', detail, fix });

function reason(err: unknown): string {
  if (err instanceof ConfigError) return `invalid settings: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

export async function runDoctor(env: Record<string, string | undefined>): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  results.push(...(await checkEmqx(env)));
  results.push(await checkTemporal(env));
  results.push(await checkMongo(env));
  return results;
}

async function checkEmqx(env: Record<string, string | undefined>): Promise<CheckResult[]> {
  let emqx: EmqxClient;
  let apiUrl: string;
  try {
    const config = loadConfig(['emqx'], env).emqx;
    apiUrl = config.EMQX_API_URL;
    emqx = createEmqxClientFromConfig({ ...config, EMQX_REQUEST_TIMEOUT: Math.min(config.EMQX_REQUEST_TIMEOUT, PROBE_TIMEOUT_MS) });
  } catch (err) {
    return [fail('emqx-api', reason(err), 'set EMQX_API_URL, EMQX_API_KEY and EMQX_API_SECRET')];
  }
  try {
    let settings;
    try {
      settings = await emqx.getAuthzSettings();
    } catch (err) {
      const fix =
        err instanceof EmqxUnauthorizedError
          ? 'check EMQX_API_KEY and EMQX_API_SECRET (an API key from the EMQX dashboard, System > API Key)'
          : `check that EMQX is running and EMQX_API_URL (${apiUrl}) is its REST API`;
      return [fail('emqx-api', reason(err), fix)];
    }
    const results = [ok('emqx-api', `EMQX answers at ${apiUrl} with the API key`)];

    const authenticator = await emqx.getAuthenticator();
    if (!authenticator) results.push(fail('authenticator', `no ${AUTHENTICATOR_ID} authenticator`, SETUP));
    else {
      const problems = authenticatorProblems(authenticator);
      results.push(
        problems.length === 0
          ? ok('authenticator', `${AUTHENTICATOR_ID}: user_id_type clientid, sha256 with a prefix salt`)
          : fail('authenticator', problems.join('; '), `change it to user_id_type clientid and sha256/prefix (docs/emqx-setup.md), then re-provision the devices`),
      );
    }

    const sources = await emqx.listAuthzSources();
    const builtIn = sources.find((s) => s.type === 'built_in_database');
    if (!builtIn) results.push(fail('authz-source', 'no built_in_database authorization source', SETUP));
    else if (!builtIn.enable) results.push(fail('authz-source', 'the built_in_database source is disabled', SETUP));
    else if (sources[0] !== builtIn) results.push(fail('authz-source', `the ${sources[0]?.type ?? '?'} source is checked before built_in_database`, SETUP));
    else results.push(ok('authz-source', 'built_in_database is the first authorization source'));

    results.push(
      settings.no_match === 'deny'
        ? ok('no-match', 'authorization.no_match is deny')
        : fail('no-match', 'authorization.no_match is allow: a client no rule covers may use any topic', SETUP),
    );
    const file = sources.find((s) => s.type === 'file');
    if (file?.enable) {
      results.push(
        warn(
          'file-source',
          "the file authorization source is enabled: EMQX's stock acl.conf ends with {allow, all}, so no_match never applies",
          'run `device-ops emqx setup --disable-file-source` unless you rely on acl.conf',
        ),
      );
    }

    results.push(...(await checkWebhook(emqx, env)));
    return results;
  } finally {
    await emqx.close();
  }
}

const ActionView = z.looseObject({
  enable: z.boolean().optional(),
  connector: z.string(),
  description: z.string().optional(),
  parameters: z.looseObject({ path: z.string().optional() }).optional(),
});
const ConnectorView = z.looseObject({ url: z.string() });

async function checkWebhook(emqx: EmqxClient, env: Record<string, string | undefined>): Promise<CheckResult[]> {
  const ruleId = `${WEBHOOK_NAME}_events`;
  const rule = await emqx.getRule(ruleId);
  const action = await emqx.getAction('http', WEBHOOK_NAME);
  if (!rule || rule.enable === false || !action || !(rule.actions ?? []).includes(`http:${WEBHOOK_NAME}`)) {
    const what = !rule ? `no rule ${ruleId}` : rule.enable === false ? `rule ${ruleId} is disabled` : `rule ${ruleId} does not use action http:${WEBHOOK_NAME}`;
    return [fail('webhook-rule', action ? what : `${what}; no action http:${WEBHOOK_NAME}`, SETUP)];
  }
  const parsedAction = ActionView.safeParse(action);
  const connector = parsedAction.success ? await emqx.getConnector('http', parsedAction.data.connector) : null;
  const parsedConnector = ConnectorView.safeParse(connector);
  if (!parsedAction.success || !parsedConnector.success) return [fail('webhook-rule', `action http:${WEBHOOK_NAME} has no usable connector`, SETUP)];
  const target = new URL(parsedAction.data.parameters?.path ?? '/', parsedConnector.data.url);
  const results = [ok('webhook-rule', `rule ${ruleId} posts device events to ${target.toString()}`)];

  let token: string;
  try {
    token = loadConfig(['webhook'], env).webhook.WEBHOOK_TOKEN;
  } catch (err) {
    results.push(fail('webhook-token', reason(err), 'set WEBHOOK_TOKEN to the adapter\'s token'));
    token = '';
  }

  // The adapter: up, and taking the token (a body that is not an event is refused after the token check).
  let adapterUp = false;
  try {
    const health = await request(new URL('/healthz', target), { headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS });
    await health.body.dump();
    adapterUp = health.statusCode === 200;
    results.push(
      adapterUp
        ? ok('webhook-adapter', `the adapter answers at ${target.origin}`)
        : fail('webhook-adapter', `the adapter at ${target.origin} reports ${health.statusCode} on /healthz`, 'check its MongoDB connection and its log'),
    );
  } catch (err) {
    results.push(fail('webhook-adapter', `the adapter at ${target.origin} is not reachable: ${reason(err)}`, 'start the webhook adapter (npm run webhook), or point the webhook at it with `device-ops emqx setup --url`'));
  }
  if (!token) return results;

  const emqxSendsToken = fingerprintMatches(parsedAction.data.description, token);
  if (emqxSendsToken === false) {
    results.push(fail('webhook-token', `EMQX's action http:${WEBHOOK_NAME} sends another token than WEBHOOK_TOKEN`, 'run `device-ops emqx setup` with the adapter\'s WEBHOOK_TOKEN'));
    return results;
  }
  if (adapterUp) {
    try {
      const probe = await request(target, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: '{}',
        headersTimeout: PROBE_TIMEOUT_MS,
        bodyTimeout: PROBE_TIMEOUT_MS,
      });
      await probe.body.dump();
      if (probe.statusCode === 401) {
        results.push(fail('webhook-token', 'the adapter refuses WEBHOOK_TOKEN', "give the adapter and `device-ops emqx setup` the same WEBHOOK_TOKEN"));
        return results;
      }
    } catch (err) {
      results.push(fail('webhook-token', `could not probe the adapter: ${reason(err)}`, 'check the adapter'));
      return results;
    }
  }
  results.push(
    emqxSendsToken === undefined
      ? warn('webhook-token', `cannot tell which token EMQX sends (no fingerprint on action http:${WEBHOOK_NAME})`, SETUP)
      : ok('webhook-token', `EMQX sends WEBHOOK_TOKEN${adapterUp ? ' and the adapter takes it' : ''}`),
  );
  return results;
}

async function checkTemporal(env: Record<string, string | undefined>): Promise<CheckResult> {
  let connection: Connection | undefined;
  try {
    const config = loadConfig(['temporal'], env).temporal;
    connection = await Connection.connect({ ...temporalConnectionOptions(config), connectTimeout: PROBE_TIMEOUT_MS });
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: config.TEMPORAL_NAMESPACE });
    const missing = ALL_SEARCH_ATTRIBUTES.map((k) => k.name).filter((name) => !(name in (customAttributes ?? {})));
    if (missing.length > 0) return fail('temporal', `search attributes not registered: ${missing.join(', ')}`, 'run `device-ops temporal setup`');
    return ok('temporal', `Temporal answers at ${config.TEMPORAL_ADDRESS}, search attributes registered`);
  } catch (err) {
    return fail('temporal', `Temporal is not reachable: ${reason(err)}`, 'check TEMPORAL_ADDRESS (and TEMPORAL_TLS / TEMPORAL_API_KEY) and that the server runs');
  } finally {
    await connection?.close();
  }
}

async function checkMongo(env: Record<string, string | undefined>): Promise<CheckResult> {
  let client: MongoClient | undefined;
  // A driver message must never carry the password of MONGODB_URI.
  const password = /^mongodb(?:\+srv)?:\/\/[^:@/]*:([^@/]+)@/.exec(env.MONGODB_URI ?? '')?.[1];
  const scrub = (text: string): string => {
    if (!password) return text;
    let decoded = password;
    try {
      decoded = decodeURIComponent(password);
    } catch {
      // not percent-encoded: the raw form is all there is to hide
    }
    return text.split(password).join('***').split(decoded).join('***');
  };
  try {
    const config = loadConfig(['mongo'], env).mongo;
    client = new MongoClient(config.MONGODB_URI, { serverSelectionTimeoutMS: PROBE_TIMEOUT_MS, connectTimeoutMS: PROBE_TIMEOUT_MS });
    await client.connect();
    const probes = client.db(config.MONGODB_DB).collection<{ _id: string; at: Date }>('doctor_probes');
    const id = `doctor-${process.pid}-${Date.now()}`;
    await probes.insertOne({ _id: id, at: new Date() });
    await probes.deleteOne({ _id: id });
    return ok('mongodb', `MongoDB answers and database ${config.MONGODB_DB} is writable`);
  } catch (err) {
    return fail('mongodb', `MongoDB is not reachable or not writable: ${scrub(reason(err))}`, 'check MONGODB_URI (user rights included) and that the server runs');
  } finally {
    await client?.close();
  }
}
