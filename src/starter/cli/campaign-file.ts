import { MAX_CAMPAIGN_TARGETS, type CampaignTarget } from '../../domain/schemas/campaign';
import { TEMPLATE_VARIABLE } from '../../domain/schemas/campaign-template';
import { ClientId } from '../../domain/schemas/device';
import { InputError } from '../../domain/input-error';
import { splitCsvLine } from '../client/fleet-file';

/**
 * Reads a campaign targets file (`campaign start --targets FILE|-`): one client id per line, or a
 * CSV whose header starts with `clientId` and names per-target template values in the other columns
 * (`clientId,fw,url` fills `${fw}` and `${url}`). Blank lines and `#` comments are skipped. Every
 * line is checked before anything starts; errors name the line.
 */

const MAX_REPORTED_ERRORS = 20;

export function parseTargetsFile(text: string): CampaignTarget[] {
  const lines = text.split(/\r?\n/);
  const firstContent = lines.findIndex((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  if (firstContent < 0) throw new InputError(['targets: the file names no targets']);
  const header = splitCsvLine(lines[firstContent] as string);
  const csv = /^client_?id$/i.test(header[0] ?? '');
  const columns = csv ? header.slice(1) : [];
  const problems: string[] = [];
  for (const column of columns) {
    if (!TEMPLATE_VARIABLE.test(column)) problems.push(`line ${firstContent + 1}: column "${column}" is not a template variable name (letters, digits, "_")`);
  }
  const targets: CampaignTarget[] = [];
  for (let i = csv ? firstContent + 1 : firstContent; i < lines.length && problems.length < MAX_REPORTED_ERRORS; i++) {
    const line = (lines[i] as string).trim();
    if (!line || line.startsWith('#')) continue;
    const cells = csv ? splitCsvLine(line) : [line];
    const parsed = ClientId.safeParse(cells[0]);
    if (!parsed.success) {
      problems.push(`line ${i + 1}: clientId ${parsed.error.issues[0]?.message ?? 'is invalid'}`);
      continue;
    }
    if (csv && cells.length !== header.length) {
      problems.push(`line ${i + 1}: expected ${header.length} fields, found ${cells.length}`);
      continue;
    }
    const values = Object.fromEntries(columns.map((c, k) => [c, cells[k + 1] ?? '']));
    targets.push(columns.length > 0 ? { clientId: parsed.data, values } : { clientId: parsed.data });
    if (targets.length > MAX_CAMPAIGN_TARGETS) problems.push(`targets: more than ${MAX_CAMPAIGN_TARGETS} targets`);
  }
  if (problems.length > 0) throw new InputError(problems);
  if (targets.length === 0) throw new InputError(['targets: the file names no targets']);
  return targets;
}
