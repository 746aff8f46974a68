/** Helpers the standalone bench scripts share. */
import type { BusConnection, OutgoingMessage } from '../lib/connection/types.js';

/** `--name value` from the command line, or the default. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

/**
 * Produces n copies of `msgs`' messages to topic in batches of msgs.length,
 * `inFlight` produces outstanding; onSent sees the running count.
 */
export async function produceAll(
  c: Pick<BusConnection, 'produce'>,
  topic: string,
  msgs: OutgoingMessage[],
  n: number,
  inFlight: number,
  onSent?: (sent: number) => void,
): Promise<void> {
  const batch = msgs.length;
  let sent = 0;
  const lane = async (): Promise<void> => {
    while (sent < n) {
      const k = Math.min(batch, n - sent);
      sent += k;
      onSent?.(sent);
      await c.produce(topic, k === batch ? msgs : msgs.slice(0, k));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}
