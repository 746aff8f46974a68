// Nest microservice child process. Roles:
//   server      @EventPattern counter + @MessagePattern echo (events, RPC)
//   subscriber  @EventPattern counter only (fan-out, slow subscriber)
//   consumer    @Consume on the durable topic, group 'bench' (logbus only)
// With the `logbus-inproc` transport it is also its own publisher (publisher.ts).
// The orchestrator (run.ts) drives it over IPC: 'expect' arms a counter,
// 'report' asks for progress, 'close' shuts the app down.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { argValue, blockFor, nowMs, rssOf, toParent } from './common.js';
import type { IpcMessage } from './common.js';
import { connectPublisher, handlePublisherCommand } from './publisher.js';
import { CONSUMER_GROUP, DURABLE_TOPIC, EVENT_TOPIC, RPC_PATTERN, loadLogBus, transports } from './transports.js';
import type { Placement } from './transports.js';

/** One counting window, armed by 'expect'. `seen` tells duplicates (redeliveries) from new messages. */
const counter = {
  tag: '',
  expected: 0,
  calls: 0,
  unique: 0,
  firstAt: 0,
  lastAt: 0,
  slowMs: 0,
  done: false,
  seen: new Uint8Array(0),
};

function arm(msg: IpcMessage): void {
  counter.tag = String(msg.tag ?? '');
  counter.expected = Number(msg.n);
  counter.calls = 0;
  counter.unique = 0;
  counter.firstAt = 0;
  counter.lastAt = 0;
  counter.slowMs = Number(msg.slowMs ?? 0);
  counter.done = false;
  counter.seen = new Uint8Array(Number(msg.seqSpace ?? 0));
}

function progress(type: string): IpcMessage {
  const { tag, calls, unique, firstAt, lastAt } = counter;
  return { type, tag, calls, count: unique, firstAt, lastAt };
}

function count(data: { seq?: number } | undefined): void {
  blockFor(counter.slowMs);
  const t = nowMs();
  if (counter.calls++ === 0) counter.firstAt = t;
  counter.lastAt = t;
  const seq = data?.seq;
  if (typeof seq === 'number' && seq >= 0 && seq < counter.seen.length) {
    if (counter.seen[seq] === 0) {
      counter.seen[seq] = 1;
      counter.unique++;
    }
  } else {
    counter.unique++; // no seq space armed: every call counts
  }
  if (!counter.done && counter.expected > 0 && counter.unique >= counter.expected) {
    counter.done = true;
    toParent(progress('events-done'));
  }
}

@Controller()
class EventController {
  @EventPattern(EVENT_TOPIC)
  onEvent(@Payload() data: { seq?: number }) {
    count(data);
  }
}

@Controller()
class RpcController {
  @MessagePattern(RPC_PATTERN)
  onRpc(@Payload() data: unknown) {
    return data;
  }
}

/** @Consume comes from the lib, loaded at run time, so it is applied here rather than as syntax. */
async function consumeController(concurrency: number): Promise<Type<unknown>> {
  const { Consume } = await loadLogBus();
  if (typeof Consume !== 'function') throw new Error('nestjs-logbus does not export Consume yet');
  class ConsumeController {
    onDurable(data: { seq?: number }) {
      count(data); // returning acks the message
    }
  }
  Payload()(ConsumeController.prototype, 'onDurable', 0);
  const desc = Object.getOwnPropertyDescriptor(ConsumeController.prototype, 'onDurable')!;
  const decorated = Reflect.decorate([Consume(DURABLE_TOPIC, { group: CONSUMER_GROUP, concurrency })], ConsumeController.prototype, 'onDurable', desc);
  Object.defineProperty(ConsumeController.prototype, 'onDurable', decorated ?? desc);
  Controller()(ConsumeController);
  return ConsumeController;
}

async function main() {
  const name = argValue('transport')!;
  const role = argValue('role', 'server');
  const placement = JSON.parse(argValue('placement', '{}')!) as Placement;
  const def = transports[name];
  if (!def) throw new Error(`unknown transport ${name}`);

  const controllers: Type<unknown>[] =
    role === 'consumer'
      ? [await consumeController(Number(argValue('concurrency', '1')))]
      : role === 'subscriber'
        ? [EventController]
        : [EventController, RpcController];
  class BenchModule {}
  Module({ controllers })(BenchModule);

  const options = await def.server(placement, role === 'consumer' ? { group: CONSUMER_GROUP } : {});
  const app = await NestFactory.createMicroservice(BenchModule, { ...(options as object), logger: ['error', 'warn'] });
  await app.listen();
  // logbus-inproc: the publisher lives in this process too, on the same embedded broker.
  const client = def.logbus === 'inproc' ? await def.client(placement) : undefined;
  if (client) await connectPublisher(def, client);

  process.on('message', async (msg: IpcMessage) => {
    if (client && (await handlePublisherCommand(client, msg))) return;
    switch (msg?.type) {
      case 'expect':
        arm(msg);
        toParent({ type: 'expect-ok', tag: counter.tag });
        break;
      case 'report':
        toParent({ ...progress('report'), rss: rssOf(process.pid) });
        break;
      case 'close':
        try {
          await client?.close();
          await app.close();
        } finally {
          toParent({ type: 'closed' });
          process.exit(0);
        }
    }
  });
  process.on('disconnect', () => process.exit(0));
  toParent({ type: 'ready', pid: process.pid });
}

main().catch(err => {
  toParent({ type: 'fatal', error: String(err?.stack ?? err) });
  process.exit(1);
});
