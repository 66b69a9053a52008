import { describe, expect, it } from 'vitest';
import { fleetFormatOf, parseFleetFile } from '../../src/starter/client/fleet-file';

describe('fleet files', () => {
  it('reads CSV with lists separated by semicolons and quoted fields', () => {
    const csv = [
      'clientId,username,password,acl,subscriptions,tags',
      'd1,,password-1,"allow publish d/${clientid}/up;allow subscribe d/${clientid}/cmd",d/d1/cmd:1,lab',
      'd2,user2,password-2,,,',
    ].join('\n');
    const devices = parseFleetFile(csv, 'csv');
    expect(devices).toHaveLength(2);
    expect(devices[0]).toMatchObject({ clientId: 'd1', username: 'd1', acl: [{ permission: 'allow', action: 'publish' }, { action: 'subscribe' }], subscriptions: [{ topic: 'd/d1/cmd', qos: 1 }], tags: ['lab'] });
    expect(devices[1]).toMatchObject({ clientId: 'd2', username: 'user2', acl: [], subscriptions: [] });
  });

  it('reads NDJSON with rules as strings or objects', () => {
    const text = [
      JSON.stringify({ clientId: 'n1', password: 'password-1', acl: ['allow all x/#'] }),
      JSON.stringify({ clientId: 'n2', password: 'password-2', acl: [{ permission: 'deny', action: 'publish', topic: 'y' }, 'allow subscribe s'], subscriptions: ['s:2'] }),
    ].join('\n');
    const devices = parseFleetFile(text, 'ndjson');
    expect(devices.map((d) => d.clientId)).toEqual(['n1', 'n2']);
    expect(devices[1]?.subscriptions).toEqual([{ topic: 's', qos: 2 }]);
  });

  it('reports every bad row with its line and field, and duplicates', () => {
    const csv = ['clientId,password', 'ok1,password-1', ',password-2', 'ok1,password-3', 'x,short'].join('\n');
    expect(() => parseFleetFile(csv, 'csv')).toThrow(/line 3: clientId: must not be empty.*line 4: clientId: ok1 already appears on line 2.*line 5: password: must be at least 8/);
    expect(() => parseFleetFile('{"clientId":', 'ndjson')).toThrow(/line 1: not a JSON object/);
    expect(() => parseFleetFile('clientId,password\n', 'csv')).toThrow(/no devices/);
    expect(() => fleetFormatOf('devices.txt')).toThrow(/--file/);
  });

  it('refuses a row whose desired subscriptions its ACL does not allow, naming line, topic and rule', () => {
    const csv = ['clientId,password,acl,subscriptions', 'ok1,password-1,allow subscribe cmd/${clientid},cmd/ok1', 'bad1,password-2,deny subscribe cmd/#;allow subscribe cmd/${clientid},cmd/bad1'].join('\n');
    expect(() => parseFleetFile(csv, 'csv')).toThrow(/^line 3: subscription "cmd\/bad1" is denied by ACL rule 1 "deny subscribe cmd\/#"/);
  });

  it('applies the identifier rule to client ids and usernames, naming line and field', () => {
    const ndjson = [
      JSON.stringify({ clientId: 'dev\ud800', password: 'password-1' }),
      JSON.stringify({ clientId: 'ok2', username: '#', password: 'password-2' }),
      JSON.stringify({ clientId: 'ok3', username: 'user\u202e', password: 'password-3' }),
    ].join('\n');
    expect(() => parseFleetFile(ndjson, 'ndjson')).toThrow(
      /line 1: clientId: contains a lone surrogate.*line 2: username: must not contain "#".*line 3: username: contains a bidirectional text control \(U\+202E\)/,
    );
  });
});
