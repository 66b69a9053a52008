import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { createDataConverter } from '../../src/codec/data-converter';
import { workflowsPath } from '../../src/worker';
import { REPLAY_FIXTURE_KEYS } from '../support/replay-key';

/**
 * Replays a saved history of each workflow against the current code: a change that would break
 * running workflows (nondeterminism) fails here. The histories are those of the released code; a
 * workflow change after a release keeps them replaying with `patched()` (CHANGELOG.md), and a
 * history of the new behaviour is added under a new name (test/support/record-histories.ts).
 */
const dir = path.join(__dirname, '..', 'fixtures', 'histories');
/** The workflow id each history was recorded under (child workflow ids depend on it). */
const workflowIds = JSON.parse(readFileSync(path.join(dir, 'workflow-ids.json'), 'utf8')) as Record<string, string>;
const fixtures = readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'workflow-ids.json');

describe('workflow replay', () => {
  it('has a saved history for every long-running or multi-step workflow', () => {
    expect(fixtures.map((f) => f.replace('.json', '')).sort()).toEqual(
      expect.arrayContaining([
        'deprovisionDevice',
        'deviceCommand',
        'devicePresence',
        'devicePresenceCampaignWait',
        'kickDevice',
        'provisionDevice',
        'provisionFleet',
        'provisionFleetChunk',
        'rotateCredentials',
        'runCampaign',
        'runCampaignDrain',
        'runCampaignContinuous',
        'runCampaignJobRollback',
        'setDesiredSubscriptions',
        'setDeviceAcl',
      ]),
    );
  });

  it.each(fixtures)('replays %s deterministically', async (file) => {
    const history: unknown = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
    await Worker.runReplayHistory(
      { workflowsPath: workflowsPath(), dataConverter: createDataConverter(REPLAY_FIXTURE_KEYS), replayName: file },
      history,
      workflowIds[file.replace('.json', '')],
    );
  });
});
