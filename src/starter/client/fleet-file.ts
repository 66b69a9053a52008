import { z } from 'zod';
import { deviceInputProblems } from '../../domain/acl-match';
import { AclRule, ClientId, Password, Subscription, Username, parseAclRule, parseSubscription, usernameOf } from '../../domain/schemas/device';
import { InputError, issueText } from '../../domain/input-error';

/**
 * Reads a fleet file for `provision-fleet`: CSV with a header (clientId,username,password,acl,
 * subscriptions,tags; several ACL rules, subscriptions or tags separated by `;`) or NDJSON (one
 * object per line with the same fields, acl/subscriptions as arrays of strings or objects).
 * Every row is checked before anything starts; errors name the line and the field.
 */

const MAX_REPORTED_ERRORS = 20;
export const MAX_FLEET_DEVICES = 100_000;

const FleetRow = z.object({
  clientId: ClientId,
  username: Username.optional(),
  password: Password,
  acl: z.array(AclRule).max(99).default([]),
  subscriptions: z.array(Subscription).max(100).default([]),
  tags: z.array(z.string().min(1).max(64)).max(32).default([]),
});

/** A device as the file gives it; the client hashes its password before anything is sent (credentials.ts). */
export type FleetFileDevice = Omit<z.output<typeof FleetRow>, 'username'> & { username: string };

function splitList(value: string | undefined): string[] {
  return (value ?? '').split(';').map((s) => s.trim()).filter(Boolean);
}

/** Minimal RFC 4180 line splitter: quoted fields may hold commas and doubled quotes. */
export function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  fields.push(field);
  return fields.map((f) => f.trim());
}

function structuredListItems(items: unknown, parse: (text: string) => unknown): unknown {
  return Array.isArray(items) ? items.map((item: unknown) => (typeof item === 'string' ? parse(item) : item)) : items;
}

function csvRows(text: string): { line: number; raw: Record<string, unknown> }[] {
  const lines = text.split(/\r?\n/);
  const header = splitCsvLine(lines[0] ?? '');
  if (!header.includes('clientId') || !header.includes('password')) {
    throw new InputError(['line 1: the CSV header must name at least clientId and password']);
  }
  const rows: { line: number; raw: Record<string, unknown> }[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (!line.trim()) continue;
    const cells = splitCsvLine(line);
    const record: Record<string, string> = {};
    header.forEach((name, col) => (record[name] = cells[col] ?? ''));
    rows.push({
      line: i + 1,
      raw: {
        clientId: record.clientId,
        username: record.username ? record.username : undefined,
        password: record.password,
        acl: splitList(record.acl),
        subscriptions: splitList(record.subscriptions),
        tags: splitList(record.tags),
      },
    });
  }
  return rows;
}

function ndjsonRows(text: string): { line: number; raw: Record<string, unknown> }[] {
  const rows: { line: number; raw: Record<string, unknown> }[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]?.trim();
    if (!line) continue;
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
      rows.push({ line: i + 1, raw: value as Record<string, unknown> });
    } catch {
      rows.push({ line: i + 1, raw: { __invalidJson: true } });
    }
  }
  return rows;
}

export function parseFleetFile(text: string, format: 'csv' | 'ndjson'): FleetFileDevice[] {
  const rows = format === 'csv' ? csvRows(text) : ndjsonRows(text);
  const errors: string[] = [];
  const devices: FleetFileDevice[] = [];
  const seen = new Map<string, number>();
  for (const { line, raw } of rows) {
    if (raw.__invalidJson) {
      errors.push(`line ${line}: not a JSON object`);
      continue;
    }
    let candidate: Record<string, unknown>;
    try {
      candidate = {
        ...raw,
        acl: structuredListItems(raw.acl ?? [], parseAclRule),
        subscriptions: structuredListItems(raw.subscriptions ?? [], parseSubscription),
      };
    } catch (err) {
      errors.push(`line ${line}: ${(err as Error).message}`);
      continue;
    }
    const parsed = FleetRow.safeParse(candidate);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) errors.push(`line ${line}: ${issue.path.join('.') || 'row'}: ${issueText(issue, candidate)}`);
      continue;
    }
    const refused = deviceInputProblems(parsed.data);
    if (refused.length > 0) {
      for (const problem of refused) errors.push(`line ${line}: ${problem}`);
      continue;
    }
    const previous = seen.get(parsed.data.clientId);
    if (previous !== undefined) {
      errors.push(`line ${line}: clientId: ${parsed.data.clientId} already appears on line ${previous}`);
      continue;
    }
    seen.set(parsed.data.clientId, line);
    devices.push({ ...parsed.data, username: usernameOf(parsed.data) });
  }
  if (devices.length + errors.length === 0) errors.push('the fleet file has no devices');
  if (devices.length > MAX_FLEET_DEVICES) errors.push(`at most ${MAX_FLEET_DEVICES} devices per file (got ${devices.length})`);
  if (errors.length > 0) {
    const shown = errors.slice(0, MAX_REPORTED_ERRORS);
    if (errors.length > shown.length) shown.push(`... and ${errors.length - shown.length} more`);
    throw new InputError(shown);
  }
  return devices;
}

export function fleetFormatOf(file: string): 'csv' | 'ndjson' {
  if (/\.csv$/i.test(file)) return 'csv';
  if (/\.(ndjson|jsonl)$/i.test(file)) return 'ndjson';
  throw new InputError([`--file: ${file} must end in .csv, .ndjson or .jsonl`]);
}
