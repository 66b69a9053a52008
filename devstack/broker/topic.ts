/**
 * MQTT topic names and filters (MQTT 3.1.1 section 4.7), shared by routing, the REST publish checks,
 * authorization rules and rule-engine FROM clauses.
 */

const MAX_TOPIC_LENGTH = 65_535;

/** A name a message can be published to: not empty, no wildcards, no NUL. */
export function isValidTopicName(topic: string): boolean {
  return topic.length > 0 && topic.length <= MAX_TOPIC_LENGTH && !/[+#\u0000]/.test(topic);
}

/** A filter a client can subscribe to: `+` fills a whole level, `#` only the whole last level. */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.length > MAX_TOPIC_LENGTH || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  return levels.every((level, index) => {
    if (level === '#') return index === levels.length - 1;
    return level === '+' || !/[+#]/.test(level);
  });
}

/**
 * Whether `topic` is matched by `filter`. Levels of `topic` are compared literally, so the same
 * function also tells whether an ACL rule's filter covers a subscription filter, the way EMQX's
 * `emqx_topic:match/2` does. Topics starting with `$` are not matched by a leading wildcard
 * ([MQTT-4.7.2-1]).
 */
export function topicMatchesFilter(topic: string, filter: string): boolean {
  const topicLevels = topic.split('/');
  const filterLevels = filter.split('/');
  if (topic.startsWith('$') && (filterLevels[0] === '+' || filterLevels[0] === '#')) return false;
  for (let i = 0; i < filterLevels.length; i++) {
    const level = filterLevels[i];
    if (level === '#') return true;
    if (i >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[i]) return false;
  }
  return topicLevels.length === filterLevels.length;
}

export function isSystemTopic(topic: string): boolean {
  return topic.startsWith('$SYS/');
}
