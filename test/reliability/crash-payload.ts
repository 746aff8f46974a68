/**
 * The messages of the broker-crash rounds: deterministic from (producer,
 * seq), so the checker can rebuild the exact bytes, key and headers a
 * producer sent, and self-checking (a checksum field), so a consumer can tell
 * a damaged record from a good one on its own.
 */
import { createHash } from 'node:crypto';

export const CRASH_TOPIC = 'crash.events';

const checksum = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 16);

export interface CrashMessage {
  key: string;
  headers: Record<string, string>;
  value: Buffer;
}

export function crashMessage(producer: number, seq: number): CrashMessage {
  // 20..~600 bytes, varying, so batches and records straddle read windows differently
  const body = `p${producer}s${seq}:` + 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat((seq * 7 + producer * 13) % 17);
  return {
    key: `p${producer}-k${seq % 5}`,
    headers: { producer: String(producer), seq: String(seq) },
    value: Buffer.from(JSON.stringify({ p: producer, seq, body, sum: checksum(body) })),
  };
}

/** The (producer, seq) of a valid record; a reason string when it is not one of ours, whole. */
export function parseCrashMessage(value: Buffer, key: string | undefined, headers: Record<string, string>): { p: number; seq: number } | string {
  let v: { p?: unknown; seq?: unknown; body?: unknown; sum?: unknown };
  try {
    v = JSON.parse(value.toString('utf8'));
  } catch (e) {
    return `not JSON: ${(e as Error).message}`;
  }
  if (typeof v.p !== 'number' || typeof v.seq !== 'number' || typeof v.body !== 'string' || typeof v.sum !== 'string') return 'fields missing';
  if (checksum(v.body) !== v.sum) return 'checksum mismatch';
  const expected = crashMessage(v.p, v.seq);
  if (key !== expected.key) return `key ${key} instead of ${expected.key}`;
  if (headers.producer !== expected.headers.producer || headers.seq !== expected.headers.seq) return `headers ${JSON.stringify(headers)}`;
  if (!value.equals(expected.value)) return 'bytes differ from what was sent';
  return { p: v.p, seq: v.seq };
}
