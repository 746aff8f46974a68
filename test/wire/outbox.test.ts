import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { Outbox } from '../../lib/wire/outbox.js';

/** A socket that records each write (one write = one syscall's worth of frames). */
function recordingSocket() {
  const writes: string[] = [];
  const socket = Object.assign(new EventEmitter(), {
    destroyed: false,
    writableLength: 0,
    write(data: Buffer) {
      writes.push(data.toString());
      return true;
    },
  });
  return { socket: socket as unknown as Socket, writes };
}

const nextTurn = () => new Promise<void>(r => setImmediate(r));
const frame = (s: string) => Buffer.from(s);

describe('Outbox batching', () => {
  it('writes everything sent in one turn as one write, at the end of the turn', async () => {
    const { socket, writes } = recordingSocket();
    const out = new Outbox(socket, () => {});
    out.send(frame('a'));
    out.send(frame('b'));
    await Promise.resolve();
    expect(writes).toEqual([]); // not before the turn ends
    await nextTurn();
    expect(writes).toEqual(['ab']);
  });

  it('sends an answer at the end of the current job, with whatever was queued before it', async () => {
    const { socket, writes } = recordingSocket();
    const out = new Outbox(socket, () => {});
    out.send(frame('delivery'));
    out.sendSoon(frame('answer'));
    out.send(frame('more'));
    await Promise.resolve();
    // the same job's frames go together; nothing waited for the next turn
    expect(writes).toEqual(['deliveryanswermore']);
  });

  it('makes at most one early write per turn; later answers of the turn batch up', async () => {
    const { socket, writes } = recordingSocket();
    const out = new Outbox(socket, () => {});
    out.sendSoon(frame('1'));
    await Promise.resolve();
    out.sendSoon(frame('2'));
    await Promise.resolve();
    out.sendSoon(frame('3'));
    await Promise.resolve();
    expect(writes).toEqual(['1']);
    await nextTurn();
    expect(writes).toEqual(['1', '23']);
    // a new turn may write early again
    out.sendSoon(frame('4'));
    await Promise.resolve();
    expect(writes).toEqual(['1', '23', '4']);
  });

  it('sends a burst of answers in writes of 32, the first while the burst is still being produced', async () => {
    const { socket, writes } = recordingSocket();
    const out = new Outbox(socket, () => {});
    for (let i = 0; i < 100; i++) {
      out.sendSoon(frame('a'));
      // the peer has the first 32 before the 33rd is even produced
      if (i === 32) expect(writes).toEqual(['a'.repeat(32)]);
    }
    await nextTurn();
    expect(writes.map(w => w.length)).toEqual([32, 32, 32, 4]);
  });

  it('runs beforeFlush on an early write, so batched deliveries leave with the answer', async () => {
    const { socket, writes } = recordingSocket();
    const out = new Outbox(socket, () => {});
    let pending: string | undefined = 'batch';
    out.beforeFlush = () => {
      if (pending) out.send(frame(pending));
      pending = undefined;
    };
    out.sendSoon(frame('ok'));
    await Promise.resolve();
    expect(writes).toEqual(['okbatch']);
  });

  it('an explicit flush() does not hold back the next answer until the turn ends', async () => {
    const { socket, writes } = recordingSocket();
    const out = new Outbox(socket, () => {});
    out.sendSoon(frame('a'));
    out.flush();
    await Promise.resolve();
    out.sendSoon(frame('b'));
    await Promise.resolve();
    expect(writes).toEqual(['a', 'b']);
  });

  it('writes nothing after clear()', async () => {
    const { socket, writes } = recordingSocket();
    const out = new Outbox(socket, () => {});
    out.sendSoon(frame('x'));
    out.clear();
    await nextTurn();
    expect(writes).toEqual([]);
  });
});
