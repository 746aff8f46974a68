import { LogBusError } from './errors.js';

/** Topic names: 1..249 chars of [A-Za-z0-9._-], '.'-separated non-empty segments. */
export const MAX_TOPIC_LENGTH = 249;
const SEGMENT = /^[A-Za-z0-9_-]+$/;

function describe(name: unknown): string {
  const s = String(name);
  return s.length > 60 ? JSON.stringify(s.slice(0, 60)) + '…' : JSON.stringify(s);
}

/** A concrete topic (what you publish to). Throws INVALID_TOPIC. Safe as a file name once valid. */
export function validateTopicName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_TOPIC_LENGTH) {
    throw new LogBusError('INVALID_TOPIC', `topic ${describe(name)} must be a string of 1 to ${MAX_TOPIC_LENGTH} characters`);
  }
  // One pass, no allocation: this runs on every emit.
  let segStart = 0;
  for (let i = 0; i <= name.length; i++) {
    const c = i === name.length ? DOT : name.charCodeAt(i);
    if (c === DOT) {
      if (i === segStart) throw invalidTopic(name);
      segStart = i + 1;
    } else if (!isSegmentChar(c)) {
      throw invalidTopic(name);
    }
  }
}

const DOT = 0x2e;

/** [A-Za-z0-9_-] */
function isSegmentChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2d;
}

function invalidTopic(name: string): LogBusError {
  return new LogBusError('INVALID_TOPIC', `topic ${describe(name)} is not valid: use segments of [A-Za-z0-9_-] separated by single dots, no wildcards`);
}

/** Consumer group names: 1..249 chars of [A-Za-z0-9._-] (dots allowed anywhere, unlike topics). */
export const GROUP_NAME_RULE = '1 to 249 characters from [A-Za-z0-9._-]';
const GROUP_NAME = /^[A-Za-z0-9._-]{1,249}$/;

export function isValidGroupName(group: unknown): group is string {
  return typeof group === 'string' && GROUP_NAME.test(group);
}

/** A push pattern: like a topic, but a segment may be '*' (one segment) or a final '>' (one or more). */
export function validatePattern(pattern: unknown): asserts pattern is string {
  if (typeof pattern !== 'string' || pattern.length === 0 || pattern.length > MAX_TOPIC_LENGTH) {
    throw new LogBusError('INVALID_TOPIC', `pattern ${describe(pattern)} must be a string of 1 to ${MAX_TOPIC_LENGTH} characters`);
  }
  const segs = pattern.split('.');
  segs.forEach((seg, i) => {
    const ok = SEGMENT.test(seg) || seg === '*' || (seg === '>' && i === segs.length - 1);
    if (!ok) {
      throw new LogBusError(
        'INVALID_TOPIC',
        `pattern ${describe(pattern)} is not valid: segments of [A-Za-z0-9_-], '*' for one segment, '>' last for the rest`,
      );
    }
  });
}

export function isWildcard(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('>');
}

/** Does a (valid) pattern match a (valid) concrete topic? */
export function matchPattern(pattern: string, topic: string): boolean {
  if (!isWildcard(pattern)) return pattern === topic;
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== '*' && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

interface TrieNode<T> {
  children: Map<string, TrieNode<T>>;
  star?: TrieNode<T>;
  values: Set<T>; // pattern ends here
  tail: Set<T>; // '>' after this node
}

const node = <T>(): TrieNode<T> => ({ children: new Map(), values: new Set(), tail: new Set() });

/**
 * Subscriptions indexed by pattern segments, so matching a publish costs the
 * topic's depth times the wildcard branching, not the number of patterns.
 */
export class PatternTrie<T> {
  private readonly root: TrieNode<T> = node();
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(pattern: string, value: T): void {
    const segs = pattern.split('.');
    let n = this.root;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      if (s === '>') {
        if (!n.tail.has(value)) this.count++;
        n.tail.add(value);
        return;
      }
      let next = s === '*' ? n.star : n.children.get(s);
      if (!next) {
        next = node();
        if (s === '*') n.star = next;
        else n.children.set(s, next);
      }
      n = next;
    }
    if (!n.values.has(value)) this.count++;
    n.values.add(value);
  }

  remove(pattern: string, value: T): boolean {
    const segs = pattern.split('.');
    const path: Array<[TrieNode<T>, string]> = [];
    let n: TrieNode<T> | undefined = this.root;
    for (const s of segs) {
      if (s === '>') {
        const removed = n.tail.delete(value);
        if (removed) this.count--;
        this.prune(path, n);
        return removed;
      }
      path.push([n, s]);
      n = s === '*' ? n.star : n.children.get(s);
      if (!n) return false;
    }
    const removed = n.values.delete(value);
    if (removed) this.count--;
    this.prune(path, n);
    return removed;
  }

  /** Calls fn once per (pattern, value) pair matching the topic. */
  match(topic: string, fn: (value: T) => void): void {
    this.walk(this.root, topic.split('.'), 0, fn);
  }

  private walk(n: TrieNode<T>, segs: string[], i: number, fn: (value: T) => void): void {
    if (i < segs.length) n.tail.forEach(fn);
    if (i === segs.length) {
      n.values.forEach(fn);
      return;
    }
    const exact = n.children.get(segs[i]);
    if (exact) this.walk(exact, segs, i + 1, fn);
    if (n.star) this.walk(n.star, segs, i + 1, fn);
  }

  private prune(path: Array<[TrieNode<T>, string]>, leaf: TrieNode<T>): void {
    let child = leaf;
    for (let i = path.length - 1; i >= 0; i--) {
      if (child.values.size || child.tail.size || child.children.size || child.star) return;
      const [parent, seg] = path[i];
      if (seg === '*') parent.star = undefined;
      else parent.children.delete(seg);
      child = parent;
    }
  }
}
