import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { startBenchStack } from '../../bench/stack';
import { REPLAY_FIXTURE_KEYS } from './replay-key';

/**
 * Records one history per workflow into test/fixtures/histories, for the replay test.
 * Run after a deliberate workflow change that old histories need not survive:
 *   npx tsx test/support/record-histories.ts
 */
async function main(): Promise<void> {
  const stack = await startBenchStack({ payloadEncryptionKeys: REPLAY_FIXTURE_KEYS });
  const out = path.join(__dirname, '..', 'fixtures', 'histories');
  mkdirSync(out, { recursive: true });
  const manifest: Record<string, string> = {};
  const save = async (name: string, workflowId: string): Promise<void> => {
    manifest[name] = workflowId;
    const history = await stack.temporal.workflow.getHandle(workflowId).fetchHistory();
    writeFileSync(path.join(out, `${name}.json`), historyToJSON(history));
    console.log(`saved ${name} (${history.events?.length ?? 0} events)`);
  };
  try {
    const { ops } = stack;
    await ops.provision({ clientId: 'replay-1', password: 'replay-password', acl: [{ permission: 'allow', action: 'publish', topic: 'a/${clientid}' }], subscriptions: [{ topic: 'c/replay-1', qos: 1 }] });
    await save('provisionDevice', 'provision/replay-1');
    await ops.setAcl('replay-1', [{ permission: 'allow', action: 'all', topic: 'b/#' }]);
    await save('setDeviceAcl', 'acl/replay-1');
    await ops.setSubscriptions('replay-1', [{ topic: 'c/x', qos: 0 }]);
    await save('setDesiredSubscriptions', 'subscriptions/replay-1');
    await (await ops.startRotation({ clientId: 'replay-1', generatePassword: true, kick: true })).result();
    await save('rotateCredentials', 'rotate/replay-1');
    await ops.kick('replay-1');
    await save('kickDevice', 'kick/replay-1');
    await (await ops.startDeprovisioning('replay-1')).result();
    await save('deprovisionDevice', 'deprovision/replay-1');
    const devices = Array.from({ length: 3 }, (_, i) => ({ clientId: `rf-${i}`, username: `rf-${i}`, password: `password-${i}-x`, acl: [], subscriptions: [], tags: [] }));
    const { handle } = await ops.startFleetProvisioning(devices);
    await handle.result();
    await save('provisionFleet', handle.workflowId);
    await save('provisionFleetChunk', `${handle.workflowId}/chunk-0`);
    writeFileSync(path.join(out, 'workflow-ids.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  } finally {
    await stack.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
