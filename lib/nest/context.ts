import { BaseRpcContext } from '@nestjs/microservices';

/** [topic, offset, timestamp, key, headers, deliveryCount, group], positional like Nest's own contexts. */
export type LogBusContextArgs = [
  topic: string,
  offset: number | undefined,
  timestamp: number,
  key: string | undefined,
  headers: Record<string, string>,
  deliveryCount: number,
  group: string | undefined,
];

/** What `@Ctx()` gives a logbus handler (API.md, Context). */
export class LogBusContext extends BaseRpcContext<LogBusContextArgs> {
  constructor(args: LogBusContextArgs) {
    super(args);
  }

  /** The concrete topic the message was published to (the pattern, for requests). */
  getTopic(): string {
    return this.args[0];
  }

  /** Offset in the topic's log; undefined for non-durable topics and requests. */
  getOffset(): number | undefined {
    return this.args[1];
  }

  /** Publish time set by the broker, ms since the epoch. */
  getTimestamp(): number {
    return this.args[2];
  }

  getKey(): string | undefined {
    return this.args[3];
  }

  /** Headers given at publish; an empty object if none. */
  getHeaders(): Record<string, string> {
    return this.args[4];
  }

  /** 1 on first delivery, 2 on the first redelivery, … (pull); always 1 for push. */
  getDeliveryCount(): number {
    return this.args[5];
  }

  /** The consumer group (pull), else undefined. */
  getGroup(): string | undefined {
    return this.args[6];
  }
}
