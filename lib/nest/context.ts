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

/** What a context is made from: a delivery, or the fields of a request. */
export interface LogBusContextSource {
  readonly topic: string;
  readonly offset: number | undefined;
  readonly timestamp: number;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly deliveryCount: number;
  readonly group: string | undefined;
}

/** What `@Ctx()` gives a logbus handler (API.md, Context). */
export class LogBusContext extends BaseRpcContext<LogBusContextArgs> {
  /** Set when made from a source: the args array is then built only if asked for (one object per message, not three). */
  private readonly source: LogBusContextSource | undefined;
  private built: LogBusContextArgs | undefined;
  private headers: Record<string, string> | undefined;

  constructor(args: LogBusContextArgs);
  /** @internal The context of a delivery or request, without copying its fields. */
  constructor(args: undefined, source: LogBusContextSource);
  constructor(args: LogBusContextArgs | undefined, source?: LogBusContextSource) {
    super(args as LogBusContextArgs);
    this.source = source;
    this.built = undefined;
    this.headers = undefined;
  }

  override getArgs(): LogBusContextArgs {
    const s = this.source;
    if (s === undefined) return this.args;
    return (this.built ??= [s.topic, s.offset, s.timestamp, s.key, this.getHeaders(), s.deliveryCount, s.group]);
  }

  override getArgByIndex(index: number): unknown {
    return this.getArgs()[index];
  }

  /** The concrete topic the message was published to (the pattern, for requests). */
  getTopic(): string {
    return this.source !== undefined ? this.source.topic : this.args[0];
  }

  /** Offset in the topic's log; undefined for non-durable topics and requests. */
  getOffset(): number | undefined {
    return this.source !== undefined ? this.source.offset : this.args[1];
  }

  /** Publish time set by the broker, ms since the epoch. */
  getTimestamp(): number {
    return this.source !== undefined ? this.source.timestamp : this.args[2];
  }

  getKey(): string | undefined {
    return this.source !== undefined ? this.source.key : this.args[3];
  }

  /** Headers given at publish; an empty object if none (the handler's own: changing it changes nothing else). */
  getHeaders(): Record<string, string> {
    if (this.source === undefined) return this.args[4];
    // a delivery's headers may be shared (NO_HEADERS, or one object for every subscriber of a message)
    return (this.headers ??= { ...this.source.headers });
  }

  /** 1 on first delivery, 2 on the first redelivery, … (pull); always 1 for push. */
  getDeliveryCount(): number {
    return this.source !== undefined ? this.source.deliveryCount : this.args[5];
  }

  /** The consumer group (pull), else undefined. */
  getGroup(): string | undefined {
    return this.source !== undefined ? this.source.group : this.args[6];
  }
}
