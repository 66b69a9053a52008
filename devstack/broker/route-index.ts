/**
 * The broker's routing table: which subscribers hold which topic filter, and which filters match a
 * topic name, found by walking a trie of filter levels (as EMQX's emqx_trie does for wildcard
 * filters, https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_trie_search.erl) instead of
 * testing every subscription. A REST `/publish/bulk` to thousands of connected devices looks up one
 * route per message; scanning every session's filters for each message made its cost grow with the
 * number of connected clients.
 * Matching follows MQTT 3.1.1 section 4.7 as devstack/broker/topic.ts `topicMatchesFilter` does:
 * `+` one level, `#` the rest (the parent level included), and no leading wildcard for `$` topics.
 */

interface TrieNode {
  children: Map<string, TrieNode>;
  /** The filter ending at this node, when one does. */
  filter?: string;
}

const newNode = (): TrieNode => ({ children: new Map() });

export class RouteIndex<T> {
  private readonly byFilter = new Map<string, Set<T>>();
  private readonly root: TrieNode = newNode();
  private subscriptions = 0;

  add(filter: string, subscriber: T): void {
    let subscribers = this.byFilter.get(filter);
    if (!subscribers) {
      subscribers = new Set();
      this.byFilter.set(filter, subscribers);
      this.insert(filter);
    }
    if (subscribers.has(subscriber)) return;
    subscribers.add(subscriber);
    this.subscriptions += 1;
  }

  remove(filter: string, subscriber: T): void {
    const subscribers = this.byFilter.get(filter);
    if (!subscribers?.delete(subscriber)) return;
    this.subscriptions -= 1;
    if (subscribers.size > 0) return;
    this.byFilter.delete(filter);
    this.prune(filter);
  }

  /** Subscriptions over all subscribers. */
  subscriptionCount(): number {
    return this.subscriptions;
  }

  /** Each distinct filter once. */
  filters(): string[] {
    return [...this.byFilter.keys()];
  }

  filterCount(): number {
    return this.byFilter.size;
  }

  subscribersOf(filter: string): ReadonlySet<T> {
    return this.byFilter.get(filter) ?? new Set();
  }

  /** The filters that match a topic name. */
  matchingFilters(topic: string): string[] {
    const found: string[] = [];
    this.walk(this.root, topic.split('/'), 0, topic.startsWith('$'), found);
    return found;
  }

  hasMatch(topic: string): boolean {
    // An exact filter is the common case (one topic per device): no walk needed.
    return this.byFilter.has(topic) || this.matchingFilters(topic).length > 0;
  }

  private walk(node: TrieNode, levels: string[], depth: number, dollar: boolean, found: string[]): void {
    const wildcardsAllowed = !(depth === 0 && dollar);
    const rest = wildcardsAllowed ? node.children.get('#') : undefined;
    if (rest?.filter !== undefined) found.push(rest.filter);
    if (depth === levels.length) {
      if (node.filter !== undefined) found.push(node.filter);
      return;
    }
    const one = wildcardsAllowed ? node.children.get('+') : undefined;
    if (one) this.walk(one, levels, depth + 1, dollar, found);
    const level = levels[depth] as string;
    // A topic name has no wildcards (topic.ts isValidTopicName), so its level never selects the `+`/`#` children.
    const exact = level === '+' || level === '#' ? undefined : node.children.get(level);
    if (exact) this.walk(exact, levels, depth + 1, dollar, found);
  }

  private insert(filter: string): void {
    let node = this.root;
    for (const level of filter.split('/')) {
      let child = node.children.get(level);
      if (!child) {
        child = newNode();
        node.children.set(level, child);
      }
      node = child;
    }
    node.filter = filter;
  }

  /** Drops the filter's end mark and the nodes left with nothing under them. */
  private prune(filter: string): void {
    const path: [TrieNode, string][] = [];
    let node: TrieNode | undefined = this.root;
    for (const level of filter.split('/')) {
      const child: TrieNode | undefined = node.children.get(level);
      if (!child) return;
      path.push([node, level]);
      node = child;
    }
    delete node.filter;
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i] as [TrieNode, string];
      const child = parent.children.get(level) as TrieNode;
      if (child.filter !== undefined || child.children.size > 0) return;
      parent.children.delete(level);
    }
  }
}

/**
 * A session's subscriptions (filter to options), telling the routing table about every change
 * while the session is registered, so code that subscribes or unsubscribes a session keeps using
 * it as a plain Map.
 */
export class SubscriptionTable<V> extends Map<string, V> {
  private listener: ((filter: string, subscribed: boolean) => void) | undefined;

  /** Routes changes to `listener` from now on (undefined: to nobody). */
  follow(listener: ((filter: string, subscribed: boolean) => void) | undefined): void {
    this.listener = listener;
  }

  override set(filter: string, value: V): this {
    const isNew = !this.has(filter);
    super.set(filter, value);
    if (isNew) this.listener?.(filter, true);
    return this;
  }

  override delete(filter: string): boolean {
    const had = super.delete(filter);
    if (had) this.listener?.(filter, false);
    return had;
  }

  override clear(): void {
    const filters = [...this.keys()];
    super.clear();
    for (const filter of filters) this.listener?.(filter, false);
  }
}
