import { existsSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../src/config';
import { ensureGoProgram, type Progress } from './binaries';

/**
 * The tools that validate the Helm chart (deploy/helm/emqx-device-ops) without a cluster, built
 * with Go from the module proxy into the project's cache like FerretDB and compose-check
 * (devstack/binaries.ts):
 * - Helm, the `tool` of devstack/helm/go.mod (pinned there), for `helm lint` and `helm template`;
 * - k8s-check (devstack/k8s-check), which decodes rendered manifests strictly into the Kubernetes
 *   API types of k8s.io/api (Kubernetes K8S_CHECK_KUBERNETES_VERSION). kubeconform would download
 *   its JSON schemas from GitHub at run time, which the test machines cannot reach.
 */

export const HELM_VERSION = '3.19.0';
export const K8S_CHECK_KUBERNETES_VERSION = '1.34';

/** HELM_PATH, else Helm built from devstack/helm into the cache. */
export async function ensureHelm(progress: Progress, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env.HELM_PATH) {
    if (!existsSync(env.HELM_PATH)) throw new Error(`HELM_PATH: ${env.HELM_PATH} does not exist`);
    return env.HELM_PATH;
  }
  return ensureGoProgram(
    {
      what: `Helm ${HELM_VERSION}`,
      name: 'helm',
      sourceDir: path.join(projectRoot(), 'devstack', 'helm'),
      target: 'helm.sh/helm/v3/cmd/helm',
      cacheFolder: `helm-${HELM_VERSION}`,
      binaryPrefix: 'helm',
      estimate: 'about 5 minutes on 2 idle cores, over 20 on a busy machine; ~600 MB more of Go caches',
    },
    progress,
    env,
  );
}

/** k8s-check (devstack/k8s-check): strict decoding into the Kubernetes API types. */
export async function ensureK8sCheck(progress: Progress, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return ensureGoProgram(
    {
      what: 'k8s-check',
      name: 'k8s-check',
      sourceDir: path.join(projectRoot(), 'devstack', 'k8s-check'),
      cacheFolder: 'k8s-check',
      binaryPrefix: 'k8s-check',
      estimate: 'about 1 minute on 2 idle cores',
    },
    progress,
    env,
  );
}
