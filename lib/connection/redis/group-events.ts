/**
 * Consumers of one group hear each other on `P:ge:T:<group>`: 'left' when a
 * member closes (the others take over its pending messages at once) and
 * 'reset' when resetGroup moves the group (blocked reads start over at once).
 */
import type { RedisClient } from './client.js';
import type { RedisKeys } from './keys.js';

export interface GroupListener {
  onGroupEvent(kind: string): void;
}

export class GroupEvents {
  private readonly channels = new Map<string, Set<GroupListener>>();

  constructor(
    private readonly keys: RedisKeys,
    private readonly sub: RedisClient,
    private readonly main: RedisClient,
  ) {
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (this.channels.size === 0) return;
      const listeners = this.channels.get(channel.toString());
      if (!listeners) return;
      const kind = message.toString();
      for (const l of listeners) l.onGroupEvent(kind);
    });
  }

  async join(topic: string, group: string, listener: GroupListener): Promise<void> {
    const channel = this.keys.groupEvents(topic, group);
    let set = this.channels.get(channel);
    if (!set) {
      set = new Set();
      this.channels.set(channel, set);
      await this.sub.subscribe(channel);
    }
    set.add(listener);
  }

  async leave(topic: string, group: string, listener: GroupListener): Promise<void> {
    const channel = this.keys.groupEvents(topic, group);
    const set = this.channels.get(channel);
    if (!set) return;
    set.delete(listener);
    if (set.size === 0) {
      this.channels.delete(channel);
      await this.sub.unsubscribe(channel).catch(() => undefined);
    }
  }

  announce(topic: string, group: string, kind: 'left' | 'reset'): Promise<unknown> {
    return this.main.call('PUBLISH', this.keys.groupEvents(topic, group), kind);
  }
}
