/**
 * The broker's network face. Each accepted socket gets one broker session (a
 * BusConnection, the same one the in-process driver uses) and frames are
 * mapped onto its methods, so every broker behaviour is the same over the
 * network as in one process.
 *
 * Push flow control: a delivery stays in the subscriber's broker buffer until
 * the CLIENT reports it done (DONE frames, batched), i.e. until its handler
 * finished — exactly as in process. A slow remote subscriber therefore fills
 * its own bounded buffer and has messages dropped and counted by the broker;
 * it never slows publishers, and this server never queues without bound:
 * a delivery is charged its bytes plus WIRE_HELD_OVERHEAD, at least its
 * encoded size, so the frames queued towards a subscriber that stops reading
 * stay within its buffer, long before maxOutboundBytes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import net, { type Server as NetServer, type Socket } from 'node:net';
import tls from 'node:tls';
import type { BusConnection, Consumer, Delivery, RawMessage, RpcCall, RpcIncoming, SubscribeSpec, Subscription } from '../connection/types.js';
import { isLogBusError, LogBusError } from '../errors.js';
import { DEFAULTS, MiB, resolveOptions, type TopicConfig } from '../options.js';
import type { InProcessConnection } from '../connection/in-process.js';
import { brokerName, DeliverBatch, dec, enc, TARGET_CONSUMER, TARGET_SUBSCRIPTION } from './codec.js';
import { DEFAULT_MAX_FRAME_BYTES, type Frame, FrameDecoder, FrameType, frameTypeName, MAX_FRAME_BEFORE_HELLO, MAX_FRAME_FROM_BROKER } from './frame.js';
import { Outbox } from './outbox.js';
import { IdTable } from '../id-table.js';

export interface WireLogger {
  log(message: string): void;
  warn(message: string): void;
}

export const stderrLogger: WireLogger = {
  log: () => {},
  warn: m => process.stderr.write(`[logbus] ${m}\n`),
};

export interface WireTlsOptions {
  key: string | Buffer;
  cert: string | Buffer;
  /** When set, clients must present a certificate signed by it. */
  ca?: string | Buffer;
}

export interface WireServerOptions {
  host?: string;
  /** 0 picks a free port (see address()). */
  port?: number;
  token?: string;
  tls?: WireTlsOptions;
  maxConnections?: number;
  /** Requests answered at most this many at once per connection; beyond it the socket is not read (back-pressure). */
  maxPending?: number;
  maxFrameBytes?: number;
  heartbeatMs?: number;
  /** A peer silent for this many heartbeat intervals is dropped. */
  heartbeatMisses?: number;
  /** Bytes queued towards one peer beyond which it is dropped as not reading. */
  maxOutboundBytes?: number;
  logger?: WireLogger;
}

export const WIRE_DEFAULTS = {
  maxConnections: 1024,
  maxPending: 1024,
  heartbeatMs: 5000,
  heartbeatMisses: 3,
  maxOutboundBytes: 64 * MiB,
  /** Subscriptions + consumers + RPC responders one connection may hold. */
  maxTargetsPerConnection: 10_000,
  /** Deliveries are flushed as one DELIVER frame once this many bytes are batched. */
  deliverBatchBytes: 256 * 1024,
};

type Resolved = Required<Omit<WireServerOptions, 'token' | 'tls'>> & Pick<WireServerOptions, 'token' | 'tls'>;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class WireServer {
  private readonly opts: Resolved;
  private server: NetServer | undefined;
  private readonly conns = new Set<ServerConnection>();
  /** Every accepted socket, refused ones included: close() must not wait on any of them. */
  private readonly sockets = new Set<Socket>();
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly tokenDigest: Buffer | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly openSession: () => BusConnection,
    options: WireServerOptions = {},
  ) {
    this.opts = {
      host: options.host ?? DEFAULTS.brokerHost,
      port: options.port ?? DEFAULTS.brokerPort,
      token: options.token,
      tls: options.tls,
      maxConnections: options.maxConnections ?? WIRE_DEFAULTS.maxConnections,
      maxPending: options.maxPending ?? WIRE_DEFAULTS.maxPending,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      heartbeatMs: options.heartbeatMs ?? WIRE_DEFAULTS.heartbeatMs,
      heartbeatMisses: options.heartbeatMisses ?? WIRE_DEFAULTS.heartbeatMisses,
      maxOutboundBytes: options.maxOutboundBytes ?? WIRE_DEFAULTS.maxOutboundBytes,
      logger: options.logger ?? stderrLogger,
    };
    this.tokenDigest = this.opts.token === undefined ? undefined : digest(this.opts.token);
  }

  get options(): Readonly<Resolved> {
    return this.opts;
  }

  async listen(): Promise<{ host: string; port: number }> {
    const onSocket = (socket: Socket) => this.accept(socket);
    const server = this.opts.tls
      ? tls.createServer({ key: this.opts.tls.key, cert: this.opts.tls.cert, ca: this.opts.tls.ca, requestCert: !!this.opts.tls.ca, rejectUnauthorized: !!this.opts.tls.ca }, onSocket)
      : net.createServer({ noDelay: true }, onSocket);
    server.on('tlsClientError', (err: Error) => this.opts.logger.warn(`TLS handshake failed: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(new LogBusError('CONNECTION_LOST', `cannot listen on ${this.opts.host}:${this.opts.port}: ${err.code ?? err.message}`, { cause: err }));
      };
      server.once('error', onError);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', err => this.opts.logger.warn(`listener error: ${err.message}`));
    this.server = server;
    this.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatMs);
    this.heartbeat.unref();
    return this.address();
  }

  address(): { host: string; port: number } {
    const a = this.server?.address();
    if (!a || typeof a === 'string') throw new LogBusError('CLOSED', 'the wire server is not listening');
    return { host: a.address, port: a.port };
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** Stops listening, drops every connection (their sessions close: in-flight pull messages go back to their groups). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.heartbeat) clearInterval(this.heartbeat);
      const server = this.server;
      const closed = server ? new Promise<void>(resolve => server.close(() => resolve())) : Promise.resolve();
      await Promise.all([...this.conns].map(c => c.close('broker shutting down')));
      for (const s of this.sockets) s.destroy();
      await closed;
    })();
    return this.closing;
  }

  checkToken(presented: string | undefined): boolean {
    if (this.tokenDigest === undefined) return true;
    if (presented === undefined) return false;
    return timingSafeEqual(digest(presented), this.tokenDigest);
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    if (this.closing || this.conns.size >= this.opts.maxConnections) {
      const why = this.closing ? 'the broker is shutting down' : `the broker has too many connections (limit ${this.opts.maxConnections})`;
      this.opts.logger.warn(`refused a connection from ${socket.remoteAddress}: ${why}`);
      socket.on('error', () => {});
      socket.end(enc.error(0, 'CLOSED', why));
      socket.resume(); // read (and discard) until the peer's FIN, so the socket can close
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    const conn = new ServerConnection(socket, this, this.opts, this.openSession);
    this.conns.add(conn);
    conn.closed.then(() => this.conns.delete(conn));
  }

  private beat(): void {
    const now = Date.now();
    for (const c of this.conns) c.heartbeat(now);
  }
}

/**
 * A push subscription keeps no record per delivery: each one's charge goes out
 * with it, and DONE brings back a count and a sum, freed in the subscriber's
 * buffer. What is outstanding bounds what a client may report.
 */
interface SubEntry {
  sub: Subscription;
  outstandingCount: number;
  outstandingBytes: number;
}
interface ConsumerEntry {
  consumer: Consumer;
  /** Deliveries not yet acked or nacked, by delivery id. */
  pending: IdTable<Delivery>;
}

/** The wire server's push subscriptions get their messages through SubscribeSpec.onRaw instead. */
function NO_DELIVERY_OBJECTS(): void {}

/**
 * What a push delivery over the wire is charged in its subscriber's buffer
 * besides its bytes, until DONE reports it. The server keeps nothing of a
 * delivery once encoded (it counts them in aggregate), so this is a window,
 * not memory: it keeps the number of unfinished deliveries where it was when
 * each had a record here (measured 168 B live), about 28,000 of 100 B in 8 MiB.
 */
export const WIRE_HELD_OVERHEAD = 192;

/** Copy of bytes that may share memory with a socket chunk, before the broker keeps them. */
function own(b: Buffer): Buffer {
  return Buffer.from(b);
}

class ServerConnection {
  private readonly decoder: FrameDecoder;
  private readonly outbox: Outbox;
  private session: BusConnection | undefined;
  private authed = false;
  private lastSeen = Date.now();
  private pending = 0;
  private writeBlocked = false;
  private readPaused = false;
  private isClosed = false;
  private readonly subs = new Map<number, SubEntry>();
  private readonly consumers = new Map<number, ConsumerEntry>();
  private readonly responders = new Map<number, { close(): Promise<void> }>();
  // per request: IdTables, not Maps (see IdTable)
  private readonly incoming = new IdTable<RpcIncoming>();
  private incomingSeq = 0;
  private readonly calls = new IdTable<RpcCall>();
  private batch: DeliverBatch | undefined;
  /** The size of the last DELIVER batch, so the next one is allocated once at about its size. */
  private batchHint = 1024;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>(r => (this.resolveClosed = r));
  private readonly peer: string;

  constructor(
    private readonly socket: Socket,
    private readonly server: WireServer,
    private readonly opts: Resolved,
    private readonly openSession: () => BusConnection,
  ) {
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.decoder = new FrameDecoder(Math.min(MAX_FRAME_BEFORE_HELLO, opts.maxFrameBytes));
    this.outbox = new Outbox(socket, blocked => {
      this.writeBlocked = blocked;
      this.updateReading();
    });
    this.outbox.beforeFlush = () => this.flushDeliveries();
    socket.on('data', chunk => this.onData(chunk));
    socket.on('error', err => this.close(`socket error: ${err.message}`));
    socket.on('close', () => this.close(undefined));
  }

  heartbeat(now: number): void {
    if (this.isClosed) return;
    if (now - this.lastSeen > this.opts.heartbeatMs * this.opts.heartbeatMisses) {
      this.close(`silent for ${now - this.lastSeen} ms (heartbeat every ${this.opts.heartbeatMs} ms)`, true);
      return;
    }
    if (this.authed) this.outbox.send(enc.empty(FrameType.PING, 0));
  }

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    this.lastSeen = Date.now();
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      this.close(`protocol error: ${(e as Error).message}`, true);
      return;
    }
    for (const f of frames) {
      if (this.isClosed) return;
      try {
        this.onFrame(f);
      } catch (e) {
        if (isLogBusError(e, 'PROTOCOL')) {
          this.close(`protocol error in ${frameTypeName(f.type)}: ${e.message}`, true);
          return;
        }
        this.reply(f.requestId, e);
      }
    }
  }

  private onFrame(f: Frame): void {
    if (!this.authed) return this.onHello(f);
    const s = this.session!;
    const id = f.requestId;
    switch (f.type) {
      case FrameType.PING:
        dec.empty(f.body, 'PING');
        return this.outbox.sendSoon(enc.empty(FrameType.PONG, id));
      case FrameType.PONG:
        return dec.empty(f.body, 'PONG');
      case FrameType.PRODUCE: {
        const b = dec.produce(f.body, true);
        return this.track(id, s.produce(b.topic, b.messages), r => enc.produced(id, r.map(x => x.offset)));
      }
      case FrameType.SUBSCRIBE: {
        const b = dec.subscribe(f.body);
        this.checkTargetRoom();
        if (this.subs.has(b.subId)) throw new LogBusError('INVALID_ARGUMENT', `subscription id ${b.subId} is already in use`);
        const entry: SubEntry = { sub: undefined as unknown as Subscription, outstandingCount: 0, outstandingBytes: 0 };
        const spec: SubscribeSpec = {
          pattern: b.pattern,
          queue: b.queue,
          bufferBytes: b.bufferBytes,
          heldBytesPerMessage: WIRE_HELD_OVERHEAD,
          onRaw: (topic, m, deliveryId, charge) => this.deliverPush(b.subId, entry, topic, m, deliveryId, charge),
        };
        return this.track(id, s.subscribe(spec, NO_DELIVERY_OBJECTS), sub => {
          entry.sub = sub;
          if (this.isClosed) void sub.unsubscribe().catch(() => {});
          else this.subs.set(b.subId, entry);
          return enc.empty(FrameType.OK, id);
        });
      }
      case FrameType.UNSUBSCRIBE: {
        const subId = dec.target(f.body, 'UNSUBSCRIBE');
        const entry = this.subs.get(subId);
        this.subs.delete(subId);
        return this.track(id, entry ? entry.sub.unsubscribe() : Promise.resolve(), () => enc.empty(FrameType.OK, id));
      }
      case FrameType.DONE: {
        const b = dec.done(f.body);
        const entry = this.subs.get(b.subId);
        if (!entry) return;
        // a report beyond what is outstanding (a buggy client) frees no more than is held
        const all = b.count >= entry.outstandingCount;
        const bytes = all ? entry.outstandingBytes : Math.min(b.bytes, entry.outstandingBytes);
        entry.outstandingCount = all ? 0 : entry.outstandingCount - b.count;
        entry.outstandingBytes -= bytes;
        entry.sub.freeBytes!(bytes);
        return;
      }
      case FrameType.CONSUME: {
        const b = dec.consume(f.body);
        this.checkTargetRoom();
        if (typeof b.spec !== 'object' || b.spec === null) throw new LogBusError('INVALID_ARGUMENT', 'consume spec must be an object');
        if (this.consumers.has(b.consumerId)) throw new LogBusError('INVALID_ARGUMENT', `consumer id ${b.consumerId} is already in use`);
        const entry: ConsumerEntry = { consumer: undefined as unknown as Consumer, pending: new IdTable() };
        const spec = b.spec as Parameters<BusConnection['consume']>[0];
        return this.track(id, s.consume(spec, d => this.deliverPull(b.consumerId, entry, d)), consumer => {
          entry.consumer = consumer;
          if (this.isClosed) void consumer.close().catch(() => {});
          else this.consumers.set(b.consumerId, entry);
          return enc.empty(FrameType.OK, id);
        });
      }
      case FrameType.ACK: {
        const b = dec.ids(f.body, 'ACK');
        const entry = this.consumers.get(b.targetId);
        if (!entry) return;
        for (const did of b.ids) {
          const d = entry.pending.get(did);
          if (d) {
            entry.pending.delete(did);
            entry.consumer.ack(d);
          }
        }
        return;
      }
      case FrameType.NACK: {
        const b = dec.nack(f.body);
        const entry = this.consumers.get(b.targetId);
        if (!entry) return;
        for (const it of b.items) {
          const d = entry.pending.get(it.id);
          if (d) {
            entry.pending.delete(it.id);
            entry.consumer.nack(d, it.error);
          }
        }
        return;
      }
      case FrameType.PAUSE: {
        const cid = dec.target(f.body, 'PAUSE');
        this.consumers.get(cid)?.consumer.pause();
        return;
      }
      case FrameType.CONSUMER_CLOSE: {
        const cid = dec.target(f.body, 'CONSUMER_CLOSE');
        const entry = this.consumers.get(cid);
        this.consumers.delete(cid);
        return this.track(id, entry ? entry.consumer.close() : Promise.resolve(), () => enc.empty(FrameType.OK, id));
      }
      case FrameType.SERVE_RPC: {
        const b = dec.serveRpc(f.body);
        this.checkTargetRoom();
        if (this.responders.has(b.serveId)) throw new LogBusError('INVALID_ARGUMENT', `responder id ${b.serveId} is already in use`);
        return this.track(id, s.serveRpc(b.pattern, req => this.onIncoming(b.serveId, req)), r => {
          if (this.isClosed) void r.close().catch(() => {});
          else this.responders.set(b.serveId, r);
          return enc.empty(FrameType.OK, id);
        });
      }
      case FrameType.SERVE_CLOSE: {
        const sid = dec.target(f.body, 'SERVE_CLOSE');
        const r = this.responders.get(sid);
        this.responders.delete(sid);
        return this.track(id, r ? r.close() : Promise.resolve(), () => enc.empty(FrameType.OK, id));
      }
      case FrameType.RPC_RESPOND: {
        const b = dec.rpcRespond(f.body);
        const req = this.incoming.get(b.incomingId);
        if (!req) return;
        if (b.done) this.incoming.delete(b.incomingId);
        req.reply(own(b.value), b.done);
        return;
      }
      case FrameType.REQUEST: {
        const b = dec.request(f.body);
        if (this.calls.has(id)) throw new LogBusError('INVALID_ARGUMENT', `request id ${id} is already in flight`);
        if (this.calls.size >= this.opts.maxPending) {
          const err = new LogBusError('TIMEOUT', `too many requests in flight on this connection (limit ${this.opts.maxPending})`);
          return this.outbox.sendSoon(enc.errorFrom(id, err, FrameType.RPC_ERROR));
        }
        // error() may run synchronously (NO_RESPONDERS) before request() returns.
        let finished = false;
        const call = s.request(b.pattern, own(b.value), {
          reply: (value, done) => {
            if (this.isClosed || finished) return;
            if (done) {
              finished = true;
              this.calls.delete(id);
            }
            this.outbox.sendSoon(enc.rpcReply(id, done, value));
          },
          error: err => {
            if (this.isClosed || finished) return;
            finished = true;
            this.calls.delete(id);
            this.outbox.sendSoon(enc.errorFrom(id, err, FrameType.RPC_ERROR));
          },
        });
        if (!finished) this.calls.set(id, call);
        return;
      }
      case FrameType.CANCEL: {
        dec.empty(f.body, 'CANCEL');
        const call = this.calls.get(id);
        this.calls.delete(id);
        call?.cancel();
        return;
      }
      case FrameType.READ: {
        const b = dec.read(f.body);
        return this.track(id, s.read(b.topic, b.from, b.max), msgs => enc.messages(id, msgs, MAX_FRAME_FROM_BROKER - 4));
      }
      case FrameType.CREATE_TOPIC: {
        const b = dec.createTopic(f.body);
        return this.track(id, s.createTopic(b.name, b.config as Parameters<BusConnection['createTopic']>[1]), () => enc.empty(FrameType.OK, id));
      }
      case FrameType.TOPICS:
        dec.empty(f.body, 'TOPICS');
        return this.track(id, s.topics(), v => enc.json(id, v));
      case FrameType.GROUPS:
        return this.track(id, s.groups(dec.str(f.body, 'GROUPS')), v => enc.json(id, v));
      case FrameType.RESET_GROUP: {
        const b = dec.resetGroup(f.body);
        return this.track(id, s.resetGroup(b.topic, b.group, b.to as Parameters<BusConnection['resetGroup']>[2]), () => enc.empty(FrameType.OK, id));
      }
      case FrameType.STATS:
        dec.empty(f.body, 'STATS');
        return this.track(id, s.stats(), v => enc.json(id, v));
      default:
        throw new LogBusError('PROTOCOL', `${frameTypeName(f.type)} is not a request a broker accepts`);
    }
  }

  private onHello(f: Frame): void {
    if (f.type !== FrameType.HELLO) {
      this.outbox.send(enc.error(f.requestId, 'UNAUTHORIZED', `the first frame must be HELLO, got ${frameTypeName(f.type)}`));
      this.close(`first frame was ${frameTypeName(f.type)}, not HELLO`, true, true);
      return;
    }
    const hello = dec.hello(f.body);
    if (!this.server.checkToken(hello.token)) {
      const why = hello.token === undefined ? 'this broker requires a token' : 'the token is wrong';
      this.outbox.send(enc.error(f.requestId, 'UNAUTHORIZED', why));
      this.close(`unauthorized client ${JSON.stringify(hello.client.slice(0, 60))}: ${why}`, true, true);
      return;
    }
    let topics: Record<string, TopicConfig> | undefined;
    if (hello.topics !== undefined) {
      try {
        topics = parseClientTopics(hello.topics);
      } catch (e) {
        const err = e instanceof LogBusError ? e : new LogBusError('INVALID_OPTION', `topics: ${(e as Error).message}`);
        this.outbox.send(enc.error(f.requestId, err.code, err.message));
        this.close(`client ${JSON.stringify(hello.client.slice(0, 60))} sent bad topics: ${err.message}`, true, true);
        return;
      }
    }
    this.session = this.openSession();
    if (topics) (this.session as Partial<InProcessConnection>).brokerInstance?.addTopicConfigs(topics);
    this.authed = true;
    this.decoder.maxFrameBytes = this.opts.maxFrameBytes;
    this.outbox.send(
      enc.helloOk(f.requestId, {
        broker: brokerName,
        heartbeatMs: this.opts.heartbeatMs,
        maxFrameBytes: this.opts.maxFrameBytes,
        maxPending: this.opts.maxPending,
      }),
    );
  }

  private checkTargetRoom(): void {
    const held = this.subs.size + this.consumers.size + this.responders.size;
    if (held >= WIRE_DEFAULTS.maxTargetsPerConnection) {
      throw new LogBusError(
        'INVALID_ARGUMENT',
        `this connection already holds ${held} subscriptions, consumers and responders (limit ${WIRE_DEFAULTS.maxTargetsPerConnection})`,
      );
    }
  }

  /** Answers a request when its promise settles; counts it against maxPending meanwhile. */
  private track<T>(requestId: number, p: Promise<T>, ok: (v: T) => Buffer): void {
    this.pending++;
    this.updateReading();
    p.then(
      v => {
        if (!this.isClosed) this.outbox.sendSoon(ok(v));
      },
      err => this.reply(requestId, err),
    ).finally(() => {
      this.pending--;
      this.updateReading();
    });
  }

  private reply(requestId: number, err: unknown): void {
    if (this.isClosed) return;
    if (!isLogBusError(err)) this.opts.logger.warn(`request from ${this.peer} failed: ${(err as Error)?.stack ?? err}`);
    this.outbox.sendSoon(enc.errorFrom(requestId, err));
  }

  private onIncoming(serveId: number, req: RpcIncoming): void {
    if (this.isClosed) return;
    if (this.incoming.size >= this.opts.maxPending * 16) {
      this.opts.logger.warn(`responder on ${this.peer} has ${this.incoming.size} requests unanswered; dropping one for ${req.pattern}`);
      return;
    }
    const incomingId = ++this.incomingSeq;
    this.incoming.set(incomingId, req);
    this.outbox.sendSoon(enc.rpcIncoming({ serveId, incomingId, pattern: req.pattern, value: req.value }));
  }

  /** Encoded and forgotten: its charge stays counted until DONE reports it. */
  private deliverPush(subId: number, entry: SubEntry, topic: string, m: RawMessage, deliveryId: number, charge: number): void {
    if (this.isClosed) return;
    entry.outstandingCount++;
    entry.outstandingBytes += charge;
    this.addDelivery(TARGET_SUBSCRIPTION, subId, deliveryId, 1, charge, undefined, topic, m);
  }

  private deliverPull(consumerId: number, entry: ConsumerEntry, d: Delivery): void {
    if (this.isClosed) return;
    entry.pending.set(d.id, d);
    this.addDelivery(TARGET_CONSUMER, consumerId, d.id, d.deliveryCount, 0, d.group, d.topic, d);
  }

  private addDelivery(
    kind: number,
    targetId: number,
    deliveryId: number,
    deliveryCount: number,
    charge: number,
    group: string | undefined,
    topic: string,
    m: RawMessage,
  ): void {
    const batch = (this.batch ??= new DeliverBatch(this.batchHint));
    batch.add(kind, targetId, deliveryId, deliveryCount, charge, group, topic, m);
    if (batch.bytes >= WIRE_DEFAULTS.deliverBatchBytes) this.flushDeliveries();
    else this.outbox.schedule();
    if (this.outbox.pendingBytes > this.opts.maxOutboundBytes) {
      this.close(`peer is not reading: ${this.outbox.pendingBytes} bytes queued (limit ${this.opts.maxOutboundBytes})`, true);
    }
  }

  private flushDeliveries(): void {
    const b = this.batch;
    if (!b || b.count === 0) return;
    this.batch = undefined;
    this.batchHint = Math.min(b.bytes + (b.bytes >> 3), WIRE_DEFAULTS.deliverBatchBytes + 1024);
    this.outbox.send(b.frame());
  }

  /** Back-pressure: stop reading requests while the peer is not reading our answers or too many are in progress. */
  private updateReading(): void {
    if (this.isClosed) return;
    const shouldPause = this.writeBlocked || this.pending >= this.opts.maxPending;
    if (shouldPause && !this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    } else if (!shouldPause && this.readPaused) {
      this.readPaused = false;
      this.socket.resume();
    }
  }

  /** Closes the socket and the broker session (which hands in-flight pull messages back to their groups at once). */
  async close(reason: string | undefined, log = false, graceful = false): Promise<void> {
    if (this.isClosed) return this.closed;
    this.isClosed = true;
    if (reason && log) this.opts.logger.warn(`closing connection from ${this.peer}: ${reason}`);
    if (graceful) {
      this.outbox.flush();
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else {
      this.outbox.clear();
      this.socket.destroy();
    }
    this.batch = undefined;
    for (const call of this.calls.valuesList()) call.cancel();
    this.calls.clear();
    this.incoming.clear();
    const session = this.session;
    this.session = undefined;
    this.subs.clear();
    this.consumers.clear();
    this.responders.clear();
    try {
      await session?.close();
    } catch (e) {
      this.opts.logger.warn(`closing the session of ${this.peer} failed: ${(e as Error).message}`);
    }
    this.resolveClosed();
  }
}


/** A client's `topics` option from HELLO: JSON, checked like the option itself (INVALID_OPTION naming the key). */
function parseClientTopics(json: string): Record<string, TopicConfig> {
  let topics: unknown;
  try {
    topics = JSON.parse(json);
  } catch {
    throw new LogBusError('INVALID_OPTION', "option 'topics' sent by the client is not valid JSON");
  }
  return resolveOptions({ topics: topics as Record<string, TopicConfig> }).topics;
}
