// Raw reference without Nest: JetStream publish with K in flight on a fresh
// stream (file storage by default, as durable as JetStream gets by default).
//   node .build/bench/peers/jetstream.js --n 100000 --size 100 --inflight 64 [--storage file|memory]
// Prints one JSON line.
import { connect } from '@nats-io/transport-node';
import { StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { argValue, inFlight } from './common.js';
import { NATS_URL } from './transports.js';

async function main() {
  const n = Number(argValue('n', '100000'));
  const size = Number(argValue('size', '100'));
  const inflight = Number(argValue('inflight', '64'));
  const storage = argValue('storage', 'file') === 'memory' ? 'memory' : 'file';

  const nc = await connect({ servers: [NATS_URL] });
  const jsm = await jetstreamManager(nc);
  const stream = `LOGBUS_PEERS_${storage.toUpperCase()}_${process.pid}`;
  const subject = `logbus.peers.${storage}.${process.pid}`;
  await jsm.streams.add({ name: stream, subjects: [subject], storage: storage === 'memory' ? StorageType.Memory : StorageType.File });
  try {
    const js = jetstream(nc);
    const data = new Uint8Array(size).fill(120);
    const r = await inFlight(n, inflight, async () => {
      await js.publish(subject, data);
      return true;
    });
    const info = await jsm.streams.info(stream);
    console.log(JSON.stringify({ storage, n, size, inflight, stored: info.state.messages, msgsPerSec: r.rps, ...r }));
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}

main().catch(err => {
  console.error('[jetstream] fatal', err);
  process.exit(1);
});
