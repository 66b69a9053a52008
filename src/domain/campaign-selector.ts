import type { TargetSelector } from './schemas/campaign';

/**
 * A selector campaign's targets: active devices whose client id starts with the prefix and/or
 * whose tags include the tag. The same rule as a MongoDB filter (resolving and rescanning) and as
 * a test of one record (matching a device just provisioned against open continuous campaigns).
 */

export function selectorFilter(selector: TargetSelector): Record<string, unknown> {
  const filter: Record<string, unknown> = { status: 'active' };
  if (selector.prefix) filter._id = { $regex: `^${selector.prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}` };
  if (selector.tag) filter.tags = selector.tag;
  return filter;
}

export function matchesSelector(selector: TargetSelector, device: { clientId: string; tags: readonly string[]; status: string }): boolean {
  if (device.status !== 'active') return false;
  if (selector.prefix && !device.clientId.startsWith(selector.prefix)) return false;
  return !selector.tag || device.tags.includes(selector.tag);
}
