import { describe, expect, it } from 'vitest';
import { OfflinePolicy, RetryPolicy, type TargetPolicy } from '../../src/domain/schemas/campaign';
import { applyOutcome, confirmAtDevice, NEVER_ATTEMPTED, wake, type AttemptOutcome } from '../../src/domain/campaign-target-state';
import { finalRecord } from '../../src/store/campaigns';

/** What "delivered" means for one target (docs/campaign-delivery.md), as pure rules. */

const policy: TargetPolicy = { retry: RetryPolicy.parse({}), offline: OfflinePolicy.parse({ wait: true }) };
const accepted: AttemptOutcome = { kind: 'delivered', messageId: 'M1' };

describe('confirming a delivery at the target device', () => {
  it('counts a message EMQX accepted as reaching the device only when the device had a session at both reads', () => {
    expect(confirmAtDevice(accepted, 'connected', 'connected')).toEqual({ kind: 'delivered', messageId: 'M1', delivery: 'connected' });
    expect(confirmAtDevice(accepted, 'offline', 'offline')).toEqual({ kind: 'delivered', messageId: 'M1', delivery: 'queued' });
    expect(confirmAtDevice(accepted, 'connected', 'offline')).toMatchObject({ delivery: 'queued' });
    expect(confirmAtDevice(accepted, 'offline', 'connected')).toMatchObject({ delivery: 'queued' });
    // Only other subscribers (a '#' monitor) matched: the device had no session at one of the reads.
    expect(confirmAtDevice(accepted, undefined, undefined)).toEqual({ kind: 'no_subscriber' });
    expect(confirmAtDevice(accepted, 'connected', undefined)).toEqual({ kind: 'no_subscriber' });
    expect(confirmAtDevice(accepted, undefined, 'connected')).toEqual({ kind: 'no_subscriber' });
  });

  it('leaves outcomes EMQX did not accept as they are', () => {
    for (const outcome of [{ kind: 'no_subscriber' }, { kind: 'transient', error: 'x' }, { kind: 'rejected', error: 'y' }] as AttemptOutcome[]) {
      expect(confirmAtDevice(outcome, 'connected', 'connected')).toBe(outcome);
    }
  });

  it('records how the message reached the device, and a queued target stays final when its device reconnects', () => {
    const state = applyOutcome(NEVER_ATTEMPTED, confirmAtDevice(accepted, 'offline', 'offline'), policy, 1_000);
    expect(state).toMatchObject({ status: 'delivered', delivery: 'queued', messageId: 'M1' });
    expect(wake(state, policy, 2_000)).toBe(state);
    expect(finalRecord('c1', 'd1', state)).toMatchObject({ status: 'delivered', delivery: 'queued' });
  });
});
