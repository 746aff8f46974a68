import type { Deserializer, Serializer } from '@nestjs/microservices';

/** Where a payload is going or came from; passed to user serializers as their `options`. */
export interface PayloadPlace {
  topic: string;
}

/**
 * Payload bytes on the bus are the message data alone (not a Nest packet), so
 * what `read()`, the CLI and other languages see is the user's data.
 * Default: JSON. A user `serializer`/`deserializer` (Nest's interfaces) turns
 * data into bytes and back: a Buffer/Uint8Array or string result is used as
 * is, anything else is JSON-encoded.
 */
export class PayloadCodec {
  constructor(
    private readonly serializer?: Serializer,
    private readonly deserializer?: Deserializer,
  ) {}

  get hasSerializer(): boolean {
    return this.serializer !== undefined;
  }

  /** Sync when there is no user serializer (the hot path); a Promise otherwise. */
  encodeNow(data: unknown, place: PayloadPlace): Buffer | Promise<Buffer> {
    return this.serializer ? this.encode(data, place) : encodeJson(data);
  }

  async encode(data: unknown, place: PayloadPlace): Promise<Buffer> {
    if (!this.serializer) return encodeJson(data);
    const out = await this.serializer.serialize(data, place);
    if (Buffer.isBuffer(out)) return out;
    if (out instanceof Uint8Array) return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    if (typeof out === 'string') return Buffer.from(out);
    return encodeJson(out);
  }

  /** decode() without a place object per message when there is no user deserializer (the hot path). */
  decodeFrom(bytes: Buffer, topic: string): unknown {
    if (!this.deserializer) return decodeJson(bytes);
    return this.deserializer.deserialize(bytes, { topic });
  }

  /** Sync when there is no user deserializer (the hot path). */
  decode(bytes: Buffer, place: PayloadPlace): unknown {
    if (!this.deserializer) return decodeJson(bytes);
    return this.deserializer.deserialize(bytes, place);
  }
}

export function encodeJson(data: unknown): Buffer {
  if (data === undefined) return Buffer.alloc(0);
  return Buffer.from(JSON.stringify(data));
}

/** Bytes that are not JSON (published by another tool) arrive as a string, as Nest's transports do. */
export function decodeJson(bytes: Buffer): unknown {
  if (bytes.length === 0) return undefined;
  const text = bytes.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * RPC reply bytes: one tag byte, then the body.
 *   0 + payload bytes   a response value
 *   1 + JSON            an error (what Nest's exception filter produced)
 *   2                   end of stream without a value
 */
export const ReplyTag = { Response: 0, Error: 1, End: 2 } as const;
export type ReplyTag = (typeof ReplyTag)[keyof typeof ReplyTag];

export function encodeReply(tag: ReplyTag, body?: Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + (body?.length ?? 0));
  out[0] = tag;
  body?.copy(out, 1);
  return out;
}

export function serializeRpcError(err: unknown): Buffer {
  if (err instanceof Error) {
    // Nest's filter hands over plain objects; a raw Error (e.g. from a deserializer) keeps its message and code.
    const { message, name } = err;
    const code = (err as { code?: unknown }).code;
    return Buffer.from(JSON.stringify({ status: 'error', message, name, ...(code !== undefined && { code }) }));
  }
  try {
    return Buffer.from(JSON.stringify(err ?? null));
  } catch {
    return Buffer.from(JSON.stringify({ status: 'error', message: String(err) }));
  }
}
