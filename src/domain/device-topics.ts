/**
 * Where a device takes jobs and commands and where it answers them (docs/jobs.md): four topic
 * templates, each a topic whose placeholders fill whole levels. Workflow-safe (no zod, no Node
 * built-ins): the command workflow renders its topics with it.
 */

export interface DeviceTopics {
  /** Where a job message reaches the device: `${clientid}` and `${jobid}`. */
  job: string;
  /** Where the device reports a job's execution state: `${clientid}` and `${jobid}`. */
  jobStatus: string;
  /** Where a command reaches the device: `${clientid}` and `${commandid}`. */
  command: string;
  /** Where the device answers a command: `${clientid}` and `${commandid}`. */
  commandReply: string;
}

export const DEFAULT_DEVICE_TOPICS: DeviceTopics = {
  job: 'devices/${clientid}/jobs/${jobid}',
  jobStatus: 'devices/${clientid}/jobs/${jobid}/status',
  command: 'devices/${clientid}/commands/${commandid}',
  commandReply: 'devices/${clientid}/commands/${commandid}/reply',
};

/** The placeholders each template must hold, each once, each a whole topic level. */
const REQUIRED: Record<keyof DeviceTopics, readonly ['clientid', 'jobid' | 'commandid']> = {
  job: ['clientid', 'jobid'],
  jobStatus: ['clientid', 'jobid'],
  command: ['clientid', 'commandid'],
  commandReply: ['clientid', 'commandid'],
};

const PLACEHOLDER = /^\$\{([a-z]+)\}$/;

/** What is wrong with one template, or null. */
export function deviceTopicProblem(kind: keyof DeviceTopics, template: string): string | null {
  const levels = template.split('/');
  const names: string[] = [];
  for (const level of levels) {
    if (level.includes('+') || level.includes('#')) return 'must not contain wildcards ("+" or "#")';
    const placeholder = PLACEHOLDER.exec(level);
    if (placeholder) names.push(placeholder[1] as string);
    else if (level.includes('${')) return `placeholder "${level}" must fill a whole topic level`;
  }
  for (const name of REQUIRED[kind]) {
    const count = names.filter((n) => n === name).length;
    if (count !== 1) return `must hold \${${name}} exactly once as a whole level`;
  }
  const unknown = names.find((n) => !REQUIRED[kind].includes(n as never));
  return unknown ? `unknown placeholder \${${unknown}} (use ${REQUIRED[kind].map((n) => `\${${n}}`).join(' and ')})` : null;
}

/** Problems of every template, as `field: reason`. */
export function deviceTopicsProblems(topics: DeviceTopics): string[] {
  return (Object.keys(REQUIRED) as (keyof DeviceTopics)[]).flatMap((kind) => {
    const problem = deviceTopicProblem(kind, topics[kind]);
    return problem ? [`${kind}: ${problem}`] : [];
  });
}

/** The topic with the placeholders filled (values are identifiers: no `/`, `+` or `#`). */
export function renderDeviceTopic(template: string, values: Record<string, string>): string {
  return template
    .split('/')
    .map((level) => {
      const name = PLACEHOLDER.exec(level)?.[1];
      return name === undefined ? level : (values[name] ?? level);
    })
    .join('/');
}

/**
 * The topic filter of a template: the named values filled, every other placeholder `+`. With no
 * values it is the filter of every device (the rule's FROM); with the client id, one device's own
 * topics (its ACL and subscriptions).
 */
export function deviceTopicFilter(template: string, values: Record<string, string> = {}): string {
  return template
    .split('/')
    .map((level) => {
      const name = PLACEHOLDER.exec(level)?.[1];
      return name === undefined ? level : (values[name] ?? '+');
    })
    .join('/');
}

/** The placeholder values of a topic that matches the template, or null if it does not match. */
export function matchDeviceTopic(template: string, topic: string): Record<string, string> | null {
  const pattern = template.split('/');
  const levels = topic.split('/');
  if (pattern.length !== levels.length) return null;
  const values: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const level = levels[i] as string;
    const name = PLACEHOLDER.exec(pattern[i] as string)?.[1];
    if (name === undefined) {
      if (level !== pattern[i]) return null;
    } else {
      if (level === '') return null;
      values[name] = level;
    }
  }
  return values;
}

/** The filters of every device's status and reply topics: what the replies rule selects. */
export function replyTopicFilters(topics: DeviceTopics): string[] {
  return [deviceTopicFilter(topics.jobStatus), deviceTopicFilter(topics.commandReply)];
}

/**
 * The ACL rules that let a device take its own jobs and commands and answer them, and nothing of
 * another device's (`provision --jobs`): the client id is filled in, the ids are `+`.
 */
export function jobAclRules(clientId: string, topics: DeviceTopics): { permission: 'allow'; action: 'publish' | 'subscribe'; topic: string }[] {
  const own = (template: string): string => deviceTopicFilter(template, { clientid: clientId });
  return [
    { permission: 'allow', action: 'subscribe', topic: own(topics.job) },
    { permission: 'allow', action: 'subscribe', topic: own(topics.command) },
    { permission: 'allow', action: 'publish', topic: own(topics.jobStatus) },
    { permission: 'allow', action: 'publish', topic: own(topics.commandReply) },
  ];
}
