import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { K8S_CHECK_KUBERNETES_VERSION } from '../../devstack/k8s-tools';
import { projectRoot } from '../../src/config';

/**
 * No cluster runs here, so the chart is rendered and validated, not installed: Helm (built from
 * devstack/helm) lints and renders it for the Kubernetes version k8s-check knows, and k8s-check
 * (devstack/k8s-check) decodes every manifest strictly into the k8s.io/api types of that version.
 */
const run = promisify(execFile);
const chart = path.join(projectRoot(), 'deploy', 'helm', 'emqx-device-ops');
const kubeVersion = `${K8S_CHECK_KUBERNETES_VERSION}.0`;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'helm-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const helmEnv = (): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '',
  HELM_CACHE_HOME: path.join(tmp, 'cache'),
  HELM_CONFIG_HOME: path.join(tmp, 'config'),
  HELM_DATA_HOME: path.join(tmp, 'data'),
});

async function helm(args: string[]): Promise<string> {
  const { stdout } = await run(inject('helmPath'), args, { env: helmEnv(), maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

async function render(valuesFile: string, extra: string[] = []): Promise<string> {
  return helm(['template', 'device-ops', chart, '--namespace', 'iot', '--kube-version', kubeVersion, '-f', valuesFile, ...extra]);
}

let renders = 0;
async function k8sCheck(rendered: string, options: { externalSecrets?: string[]; json?: boolean } = {}): Promise<string> {
  const file = path.join(tmp, `render-${++renders}.yaml`);
  writeFileSync(file, rendered);
  const args = [...(options.externalSecrets ?? []).flatMap((s) => ['-external-secret', s]), ...(options.json ? ['-json'] : []), file];
  const { stdout } = await run(inject('k8sCheckPath'), args);
  return stdout;
}

type Manifest = { kind: string; metadata: { name: string }; spec?: Record<string, unknown>; stringData?: Record<string, string> };
/** The rendered objects, as k8s-check decoded them (it fails on an invalid render). */
const manifests = async (rendered: string, externalSecrets?: string[]): Promise<Manifest[]> =>
  JSON.parse(await k8sCheck(rendered, { externalSecrets, json: true })) as Manifest[];

const cloudValues = path.join(chart, 'values-temporal-cloud.yaml');
const selfHostedValues = path.join(chart, 'values-self-hosted.yaml');
/** Every credential in values-temporal-cloud.yaml: none may appear in a pod spec. */
const cloudSecrets = ['example-temporal-cloud-api-key', 'example-mongo-password', 'example-emqx-api-key', 'example-emqx-api-secret', 'example-webhook-token-0123456789', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'example-codec-token-0123456789'];

type Container = { name: string; env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { key: string } } }[]; readinessProbe?: unknown; livenessProbe?: unknown; resources?: { requests?: unknown; limits?: unknown } };
const containersOf = (m: Manifest): Container[] =>
  ((m.spec as { template?: { spec?: { containers?: Container[] } } } | undefined)?.template?.spec?.containers ?? []);

describe('Helm chart deploy/helm/emqx-device-ops', () => {
  it('passes helm lint with both example values files', async () => {
    for (const values of [cloudValues, selfHostedValues]) {
      const out = await helm(['lint', chart, '--strict', '--kube-version', kubeVersion, '-f', values]);
      expect(out).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it(`renders for Temporal Cloud, and every manifest validates against the Kubernetes ${K8S_CHECK_KUBERNETES_VERSION} API types`, async () => {
    const text = await render(cloudValues);
    expect(await k8sCheck(text)).toMatch(new RegExp(`^20 objects valid against Kubernetes API types ${K8S_CHECK_KUBERNETES_VERSION.replace('.', '\\.')}`));
    const all = await manifests(text);
    const kinds = (kind: string): string[] => all.filter((m) => m.kind === kind).map((m) => m.metadata.name).sort();
    expect(kinds('Deployment')).toEqual(['device-ops-emqx-device-ops-codec', 'device-ops-emqx-device-ops-webhook', 'device-ops-emqx-device-ops-worker']);
    expect(kinds('PodDisruptionBudget')).toHaveLength(3);
    expect(kinds('HorizontalPodAutoscaler')).toHaveLength(3);
    expect(kinds('NetworkPolicy')).toHaveLength(3);
    expect(kinds('ServiceMonitor')).toEqual(['device-ops-emqx-device-ops-webhook', 'device-ops-emqx-device-ops-worker']);
    for (const hpa of all.filter((m) => m.kind === 'HorizontalPodAutoscaler')) {
      expect(JSON.stringify(hpa.spec)).toMatch(/"name":"cpu"/);
    }
    for (const deployment of all.filter((m) => m.kind === 'Deployment')) {
      for (const c of containersOf(deployment)) {
        expect(c.readinessProbe, `${deployment.metadata.name} readiness`).toBeDefined();
        expect(c.livenessProbe, `${deployment.metadata.name} liveness`).toBeDefined();
        expect(c.resources?.requests, `${deployment.metadata.name} requests`).toBeDefined();
        expect(c.resources?.limits, `${deployment.metadata.name} limits`).toBeDefined();
      }
    }
    const webhook = containersOf(all.find((m) => m.metadata.name.endsWith('-webhook') && m.kind === 'Deployment')!)[0]!;
    expect(webhook.readinessProbe).toMatchObject({ httpGet: { path: '/healthz' } });
    // The setup Job runs both idempotent setup commands after install and upgrade, here only EMQX's
    // (values-temporal-cloud.yaml turns the Temporal part off).
    const job = all.find((m) => m.kind === 'Job')!;
    expect(JSON.stringify(job)).toMatch(/post-install,post-upgrade/);
    expect(containersOf(job)[0]).toMatchObject({ name: 'setup' });
    expect(JSON.stringify(containersOf(job))).toMatch(/node bin\/device-ops.cjs emqx setup --url/);
    expect(JSON.stringify(containersOf(job))).not.toMatch(/temporal setup/);
  });

  it('keeps every credential in the Secret: pods only reference it', async () => {
    const all = await manifests(await render(cloudValues));
    const secret = all.find((m) => m.kind === 'Secret')!;
    expect(Object.keys(secret.stringData ?? {}).sort()).toEqual(
      ['CODEC_SERVER_TOKEN', 'EMQX_API_KEY', 'EMQX_API_SECRET', 'MONGODB_URI', 'PAYLOAD_ENCRYPTION_KEYS', 'TEMPORAL_API_KEY', 'WEBHOOK_TOKEN'].sort(),
    );
    const everythingElse = JSON.stringify(all.filter((m) => m.kind !== 'Secret'));
    for (const value of cloudSecrets) expect(everythingElse, value).not.toContain(value);
    const credentialVars = /^(MONGODB_URI|EMQX_API_KEY|EMQX_API_SECRET|WEBHOOK_TOKEN|PAYLOAD_ENCRYPTION_KEYS|TEMPORAL_API_KEY|CODEC_SERVER_TOKEN|CAMPAIGN_MQTT_PASSWORD)$/;
    const workloads = all.filter((m) => m.kind === 'Deployment' || m.kind === 'Job');
    let referenced = 0;
    for (const w of workloads) {
      for (const c of containersOf(w)) {
        for (const e of c.env ?? []) {
          if (!credentialVars.test(e.name)) continue;
          expect(e.value, `${w.metadata.name} ${e.name}`).toBeUndefined();
          expect(e.valueFrom?.secretKeyRef?.key).toBe(e.name);
          referenced++;
        }
      }
    }
    expect(referenced).toBeGreaterThanOrEqual(12);
  });

  it('renders for self-hosted Temporal with an existing Secret, rendering no Secret of its own', async () => {
    const text = await render(selfHostedValues);
    expect(await k8sCheck(text, { externalSecrets: ['device-ops-credentials'] })).toMatch(/objects valid/);
    const all = await manifests(text, ['device-ops-credentials']);
    expect(all.filter((m) => m.kind === 'Secret')).toEqual([]);
    expect(JSON.stringify(all)).toContain('temporal-frontend.temporal.svc.cluster.local:7233');
    expect(JSON.stringify(all.find((m) => m.kind === 'Job'))).toMatch(/temporal setup && node bin\/device-ops.cjs emqx setup/);
    // Without declaring the Secret external, k8s-check reports the dangling reference.
    await expect(k8sCheck(text)).rejects.toThrow(/refers to Secret "device-ops-credentials", which is neither rendered nor declared external/);
  });

  it('refuses values without the EMQX API URL, naming the value', async () => {
    await expect(render(cloudValues, ['--set', 'emqx.apiUrl='])).rejects.toThrow(/emqx\.apiUrl is required: the EMQX cluster's management API/);
    await expect(render(cloudValues, ['--set', 'webhook.token=short'])).rejects.toThrow(/webhook\.token must be at least 16 characters/);
    await expect(render(selfHostedValues, ['--set', 'temporal.address='])).rejects.toThrow(/temporal\.address is required/);
  });

  it('k8s-check rejects a manifest field the Kubernetes API does not have', async () => {
    const text = await render(cloudValues);
    await expect(k8sCheck(text.replace('maxUnavailable: 1', 'maxUnavailble: 1'))).rejects.toThrow(/PodDisruptionBudget.*unknown field "maxUnavailble"/s);
  });
});
