// The publisher side of the bench, on any ClientProxy: the IPC commands a
// client process (client.ts) or an in-process logbus server (server.ts with
// the `logbus-inproc` transport) answers.
//   events      emit N events to a topic, `window` at a time
//   publish-c   emit N events with K in flight, each awaited (durable publish rate)
//   rpc-seq     send() one at a time
//   rpc-conc    send() with K in flight
//   stats       the client's stats() where it has one (logbus)
import type { ClientProxy } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { inFlight, makePayload, nowMs, toParent, yieldLoop } from './common.js';
import type { IpcMessage } from './common.js';
import { LOGBUS_TOPICS, RPC_PATTERN } from './transports.js';
import type { TransportDef } from './transports.js';

const emitOnce = (client: ClientProxy, topic: string, data: unknown) => lastValueFrom(client.emit(topic, data), { defaultValue: undefined });

/** Emit in windows: start `window` emits, await them all, yield to I/O, repeat. */
async function emitEvents(client: ClientProxy, topic: string, n: number, size: number, window: number) {
  const base = makePayload(size);
  const t0 = nowMs();
  let i = 0;
  while (i < n) {
    const batch: Promise<unknown>[] = [];
    const end = Math.min(n, i + window);
    for (; i < end; i++) batch.push(emitOnce(client, topic, { ...base, seq: i }));
    await Promise.all(batch);
    await yieldLoop();
  }
  return { t0, tEmitDone: nowMs() };
}

/** Connects the client and configures the bench topics (a standalone broker does not know them). */
export async function connectPublisher(def: TransportDef, client: ClientProxy): Promise<void> {
  await client.connect();
  const anyClient = client as any;
  if (def.logbus && typeof anyClient.createTopic === 'function') {
    for (const [topic, config] of Object.entries(LOGBUS_TOPICS)) await anyClient.createTopic(topic, config);
  }
}

/** Answers one publisher command; false when the message is not one. */
export async function handlePublisherCommand(client: ClientProxy, m: IpcMessage & Record<string, any>): Promise<boolean> {
  const rpc = (size: number) => {
    const base = makePayload(size);
    return async (i: number) => {
      const res: any = await lastValueFrom(client.send(RPC_PATTERN, { ...base, seq: i }));
      return res?.seq === i;
    };
  };
  try {
    switch (m?.type) {
      case 'events':
        toParent({ type: 'events-sent', tag: m.tag, ...(await emitEvents(client, m.topic, m.n, m.size, m.window)) });
        return true;
      case 'publish-c': {
        const base = makePayload(m.size);
        const r = await inFlight(m.n, m.concurrency, async i => (await emitOnce(client, m.topic, { ...base, seq: i }), true));
        toParent({ type: 'publish-result', tag: m.tag, ...r });
        return true;
      }
      case 'rpc-seq':
        toParent({ type: 'rpc-result', tag: m.tag, ...(await inFlight(m.n, 1, rpc(m.size))) });
        return true;
      case 'rpc-conc':
        toParent({ type: 'rpc-result', tag: m.tag, ...(await inFlight(m.n, m.concurrency, rpc(m.size))) });
        return true;
      case 'stats': {
        const anyClient = client as any;
        toParent({ type: 'stats', tag: m.tag, stats: typeof anyClient.stats === 'function' ? await anyClient.stats() : null });
        return true;
      }
      default:
        return false;
    }
  } catch (err: any) {
    toParent({ type: 'error', tag: m?.tag, error: String(err?.stack ?? err) });
    return true;
  }
}
