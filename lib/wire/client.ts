/**
 * The remote driver: a BusConnection that carries every call over the wire
 * protocol to a logbus broker (`url: 'logbus://host:port'`).
 *
 * Reconnects by itself with capped exponential backoff and jitter, then
 * re-establishes every subscription, consumer and RPC responder (a consumer
 * resumes from its group's committed position; the broker redelivered the
 * old session's unacked messages already). Acks, done() and RPC replies that
 * belong to a previous session are ignored: ids are per session.
 * Calls made while the broker is unreachable wait up to `outageWaitMs`, then
 * fail with CONNECTION_LOST; a call in flight when the connection drops fails
 * with CONNECTION_LOST at once (it may or may not have been taken).
 */
import { readFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type {
  BusConnection,
  BusStats,
  ConnectionStatus,
  ConsumeFrom,
  Consumer,
  ConsumeSpec,
  Delivery,
  GroupInfo,
  OutgoingMessage,
  ProduceResult,
  ReadMessage,
  RpcCall,
  RpcIncoming,
  RpcReplyHandler,
  SubscribeSpec,
  Subscription,
  TopicInfo,
} from '../connection/types.js';
import { isLogBusError, LogBusError } from '../errors.js';
import { DEFAULTS, LIMITS, type ResolvedOptions, type TopicConfig } from '../options.js';
import { dec, enc, errorFromBody, TARGET_SUBSCRIPTION, type WireDeliveryBody } from './codec.js';
import { DEFAULT_MAX_FRAME_BYTES, type Frame, FrameDecoder, FrameType, frameTypeName, HEADER_BYTES, MAX_FRAME_FROM_BROKER } from './frame.js';
import { Outbox } from './outbox.js';
import { IdTable } from '../id-table.js';
import { stderrLogger, type WireLogger } from './server.js';

export interface WireClientTuning {
  /** TLS to the broker (node:tls options: ca, cert, key, servername …). */
  tls?: tls.ConnectionOptions;
  /** How long a call waits for a broker that is unreachable. Default: min(rpcTimeoutMs, 5 s). */
  outageWaitMs?: number;
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** Heartbeat interval; default: what the broker announces. */
  heartbeatMs?: number;
  heartbeatMisses?: number;
  /** Bytes queued towards the broker above which produce() waits for the socket to drain. */
  highWaterBytes?: number;
  /** How long the broker may take to answer HELLO (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Name shown in the broker's logs. */
  clientName?: string;
  logger?: WireLogger;
}

const TLS_FILE_PARAMS = ['ca', 'cert', 'key'] as const;
const URL_PARAMS = new Set(['tls', 'servername', ...TLS_FILE_PARAMS]);

/**
 * Parses 'logbus://host:port' (port default 7420). TLS without a new option:
 * 'logbus://host:port?tls=true&ca=/path/ca.pem' (also cert, key for client
 * certificates, servername); any of them implies tls. Files are read here, once.
 */
export function parseLogbusUrl(url: string): { host: string; port: number; tls: tls.ConnectionOptions | undefined } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new LogBusError('INVALID_OPTION', `url ${JSON.stringify(url)} is not a valid logbus://host:port address`);
  }
  if (u.protocol !== 'logbus:') throw new LogBusError('INVALID_OPTION', `url ${JSON.stringify(url)} must start with logbus://`);
  const port = u.port === '' ? DEFAULTS.brokerPort : Number(u.port);
  const host = u.hostname.replace(/^\[|\]$/g, '') || DEFAULTS.brokerHost;
  for (const k of u.searchParams.keys()) {
    if (!URL_PARAMS.has(k)) throw new LogBusError('INVALID_OPTION', `url parameter '${k}' is not known; use tls, ca, cert, key or servername`);
  }
  const flag = u.searchParams.get('tls');
  if (flag !== null && flag !== 'true' && flag !== 'false') throw new LogBusError('INVALID_OPTION', `url parameter tls must be true or false, got '${flag}'`);
  const wantsTls = flag === 'true' || (flag === null && [...u.searchParams.keys()].length > 0);
  if (!wantsTls) return { host, port, tls: undefined };
  const options: tls.ConnectionOptions = {};
  for (const k of TLS_FILE_PARAMS) {
    const file = u.searchParams.get(k);
    if (file === null) continue;
    try {
      options[k] = readFileSync(file);
    } catch (e) {
      throw new LogBusError('INVALID_OPTION', `url parameter ${k}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const servername = u.searchParams.get('servername');
  if (servername) options.servername = servername;
  return { host, port, tls: options };
}

interface PendingCall {
  resolve(frame: Frame): void;
  reject(err: Error): void;
}

/**
 * A delivery as decoded: it remembers the session it came from, so a late ack
 * after a reconnect is ignored, and (push) what it holds of the subscriber's
 * buffer at the broker, -1 once reported done (done() is idempotent).
 */
type WireDelivery = WireDeliveryBody;

/**
 * `live` once the broker confirmed it: only live entries are re-sent after a
 * reconnect. Deliveries that arrive before the caller has its Subscription or
 * Consumer object (same read as the OK) wait in `early`, so a handler can ack
 * through that object.
 */
interface SubEntry {
  live?: boolean;
  early?: WireDelivery[];
  spec: SubscribeSpec;
  onMessage: (d: Delivery) => void;
}
interface ConsumerEntry {
  live?: boolean;
  early?: WireDelivery[];
  spec: ConsumeSpec;
  onMessage: (d: Delivery) => void;
  paused: boolean;
}
interface ResponderEntry {
  live?: boolean;
  pattern: string;
  onRequest: (req: RpcIncoming) => void;
}

const MAX_IDS_PER_FRAME = 8192;
/**
 * Push deliveries done worth this many charged bytes go back to the broker at
 * the end of the current job, not at the end of the event-loop turn: a turn
 * that reads many chunks ran 8,000 handlers before its DONE left, and the
 * broker, still counting them against the 8 MiB buffer with what sits in the
 * socket buffers, dropped messages for a subscriber that kept up.
 */
const DONE_EARLY_BYTES = 256 * 1024;

export class WireConnection implements BusConnection {
  private readonly host: string;
  private readonly port: number;
  private readonly token: string | undefined;
  private readonly topicsJson: string | undefined;
  private readonly outageWaitMs: number;
  private readonly reconnectBaseMs: number;
  private readonly reconnectMaxMs: number;
  private readonly highWaterBytes: number;
  private readonly handshakeTimeoutMs: number;
  private readonly tls: tls.ConnectionOptions | undefined;
  private readonly logger: WireLogger;

  private _status: ConnectionStatus = 'disconnected';
  private readonly statusListeners: ((s: ConnectionStatus) => void)[] = [];
  private socket: Socket | undefined;
  private outbox: Outbox | undefined;
  private decoder: FrameDecoder | undefined;
  /** Bumped on every new session; deliveries carry it. */
  private epoch = 0;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private connectPromise: Promise<void> | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempts = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastSeen = 0;
  private heartbeatMs = 0;
  private maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;

  private nextRequestId = 1;
  private readonly pending = new IdTable<PendingCall>();
  private readonly rpcCalls = new IdTable<RpcReplyHandler>();
  /** Calls waiting for the connection to come (back). */
  private readonly waiters = new Set<{ resolve(): void; reject(e: Error): void }>();
  private readonly drainWaiters: (() => void)[] = [];

  private nextTargetId = 1;
  private readonly subs = new Map<number, SubEntry>();
  private readonly consumers = new Map<number, ConsumerEntry>();
  private readonly responders = new Map<number, ResponderEntry>();

  // Batched per flush: acks and done() reports go out as one frame per target.
  private readonly acks = new Map<number, number[]>();
  /** Per subscription: how many push deliveries are done since the last flush, and the sum of their charges. */
  private readonly dones = new Map<number, { count: number; bytes: number }>();
  /** Charges reported done since the last flush, and whether an early flush is queued (see DONE_EARLY_BYTES). */
  private doneBytes = 0;
  private doneEarly = false;
  private readonly flushDoneEarly = (): void => {
    this.doneEarly = false;
    this.outbox?.flush();
  };
  private readonly nacks = new Map<number, { id: number; error: string }[]>();

  constructor(
    options: Pick<ResolvedOptions, 'url' | 'token' | 'rpcTimeoutMs'> & Partial<Pick<ResolvedOptions, 'topics'>>,
    private readonly tuning: WireClientTuning = {},
  ) {
    const { host, port, tls: urlTls } = parseLogbusUrl(options.url ?? `logbus://${DEFAULTS.brokerHost}:${DEFAULTS.brokerPort}`);
    this.host = host;
    this.port = port;
    this.tls = tuning.tls ?? urlTls;
    this.token = options.token;
    // Sent at HELLO so that `topics` means the same on logbus:// as embedded.
    this.topicsJson = options.topics && Object.keys(options.topics).length > 0 ? JSON.stringify(options.topics) : undefined;
    this.outageWaitMs = tuning.outageWaitMs ?? Math.min(options.rpcTimeoutMs ?? DEFAULTS.rpcTimeoutMs, 5000);
    this.reconnectBaseMs = tuning.reconnectBaseMs ?? 100;
    this.reconnectMaxMs = tuning.reconnectMaxMs ?? 5000;
    this.highWaterBytes = tuning.highWaterBytes ?? 8 * 1024 * 1024;
    this.handshakeTimeoutMs = tuning.handshakeTimeoutMs ?? 10_000;
    this.logger = tuning.logger ?? stderrLogger;
  }

  get status(): ConnectionStatus {
    return this._status;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  onStatus(listener: (status: ConnectionStatus) => void): void {
    this.statusListeners.push(listener);
  }

  private setStatus(s: ConnectionStatus): void {
    if (s === this._status) return;
    this._status = s;
    for (const l of this.statusListeners) {
      try {
        l(s);
      } catch (e) {
        this.logger.warn(`status listener failed: ${(e as Error).message}`);
      }
    }
  }

  /** First connection. Fails with CONNECTION_LOST if the broker cannot be reached, UNAUTHORIZED on a bad token. */
  connect(): Promise<void> {
    if (this.closing || this.closePromise) return Promise.reject(new LogBusError('CLOSED', 'this connection was closed'));
    if (this._status === 'connected') return Promise.resolve();
    this.connectPromise ??= this.open().then(
      () => {
        this.connectPromise = undefined;
      },
      (err: Error) => {
        this.connectPromise = undefined;
        for (const w of [...this.waiters]) w.reject(err);
        this.waiters.clear();
        throw err;
      },
    );
    return this.connectPromise;
  }

  /** Opens a socket, says HELLO, re-registers everything. Resolves when connected. */
  private open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve();
      };
      // A broker that accepts TCP but never answers (hung, stopped) must not hold the handshake forever.
      const timer = setTimeout(
        () => settle(new LogBusError('CONNECTION_LOST', `the broker at ${this.address} did not answer the handshake within ${this.handshakeTimeoutMs} ms`)),
        this.handshakeTimeoutMs,
      );
      const onConnect = () =>
        void this.handshake(socket).then(
          () => settle(),
          (e: Error) => settle(e),
        );
      const socket: Socket = this.tls
        ? tls.connect({ host: this.host, port: this.port, ...this.tls }, onConnect)
        : net.connect({ host: this.host, port: this.port, noDelay: true }, onConnect);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        settle(new LogBusError('CONNECTION_LOST', `cannot reach the logbus broker at ${this.address}: ${err.code ?? err.message}`, { cause: err }));
      });
      socket.once('close', () => settle(new LogBusError('CONNECTION_LOST', `the broker at ${this.address} closed the connection during the handshake`)));
    });
  }

  private async handshake(socket: Socket): Promise<void> {
    socket.setNoDelay(true);
    const epoch = ++this.epoch;
    this.socket = socket;
    this.decoder = new FrameDecoder(MAX_FRAME_FROM_BROKER);
    this.outbox = new Outbox(socket, blocked => {
      if (!blocked) for (const w of this.drainWaiters.splice(0)) w();
    });
    this.outbox.beforeFlush = () => this.flushBatches();
    this.lastSeen = Date.now();
    socket.on('data', chunk => this.onData(socket, chunk));
    socket.on('error', () => {});
    socket.on('close', () => this.onSocketClosed(socket));

    const hello = dec.helloOk(
      (await this.rawCall(id => enc.hello(id, { token: this.token, client: this.tuning.clientName ?? `node/${process.pid}`, topics: this.topicsJson }))).body,
    );
    this.maxFrameBytes = hello.maxFrameBytes;
    this.heartbeatMs = this.tuning.heartbeatMs ?? hello.heartbeatMs;
    this.startHeartbeat();
    await this.reestablish(epoch);
    if (epoch !== this.epoch) throw new LogBusError('CONNECTION_LOST', `lost the broker at ${this.address} while re-subscribing`);
    this.attempts = 0;
    this.setStatus('connected');
    for (const w of [...this.waiters]) w.resolve();
    this.waiters.clear();
  }

  /** Re-sends every live subscription, consumer and responder on a new session. */
  private async reestablish(epoch: number): Promise<void> {
    const work: Promise<unknown>[] = [];
    for (const [subId, e] of this.subs) if (e.live) work.push(this.rawCall(id => enc.subscribe(id, { subId, ...e.spec, queue: e.spec.queue, bufferBytes: e.spec.bufferBytes })));
    for (const [cid, e] of this.consumers) {
      if (e.live) work.push(
        this.rawCall(id => enc.consume(id, cid, e.spec)).then(() => {
          if (e.paused && epoch === this.epoch) this.send(enc.target(FrameType.PAUSE, 0, cid));
        }),
      );
    }
    for (const [sid, e] of this.responders) if (e.live) work.push(this.rawCall(id => enc.serveRpc(id, sid, e.pattern)));
    const results = await Promise.allSettled(work);
    for (const r of results) {
      if (r.status === 'rejected' && !isLogBusError(r.reason, 'CONNECTION_LOST')) {
        this.logger.warn(`could not re-establish a subscription after reconnecting: ${(r.reason as Error).message}`);
      }
    }
  }

  private startHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    const misses = this.tuning.heartbeatMisses ?? 3;
    this.heartbeat = setInterval(() => {
      const socket = this.socket;
      if (!socket) return;
      if (Date.now() - this.lastSeen > this.heartbeatMs * misses) {
        this.logger.warn(`broker at ${this.address} silent for ${Date.now() - this.lastSeen} ms; reconnecting`);
        socket.destroy();
        return;
      }
      this.send(enc.empty(FrameType.PING, 0));
    }, this.heartbeatMs);
    this.heartbeat.unref();
  }

  private onSocketClosed(socket: Socket): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.outbox?.clear();
    this.outbox = undefined;
    this.epoch++;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.acks.clear();
    this.dones.clear();
    this.nacks.clear();
    const lost = () =>
      this.closing
        ? new LogBusError('CLOSED', 'the connection was closed')
        : new LogBusError('CONNECTION_LOST', `lost the connection to the broker at ${this.address}; the call may or may not have been taken`);
    for (const p of this.pending.valuesList()) p.reject(lost());
    this.pending.clear();
    for (const h of this.rpcCalls.valuesList()) h.error(lost());
    this.rpcCalls.clear();
    for (const w of this.drainWaiters.splice(0)) w();
    if (this.closing) {
      this.setStatus('disconnected');
      return;
    }
    // Only a session that got through its handshake reconnects; a failed first connect() is reported to its caller.
    if (this._status === 'connected' || this._status === 'reconnecting') {
      this.logger.warn(`lost the broker at ${this.address}; reconnecting`);
      this.setStatus('reconnecting');
      this.scheduleReconnect();
    }
  }

  private scheduleReconnect(): void {
    if (this.closing || this.reconnectTimer) return;
    const ceiling = Math.min(this.reconnectMaxMs, this.reconnectBaseMs * 2 ** Math.min(this.attempts, 20));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: spread clients that lost the same broker
    this.attempts++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closing) return;
      this.open().catch((err: Error) => {
        if (isLogBusError(err, 'UNAUTHORIZED')) {
          this.logger.warn(`broker at ${this.address} refused the token; giving up`);
          this.setStatus('disconnected');
          for (const w of [...this.waiters]) w.reject(err);
          this.waiters.clear();
          return;
        }
        this.scheduleReconnect();
      });
    }, delay);
    // Not unref'd: a service whose only connection is down must stay alive to reconnect.
  }

  /** Resolves once connected; waits at most outageWaitMs while reconnecting. */
  private whenConnected(): Promise<void> {
    if (this._status === 'connected') return Promise.resolve();
    if (this.closing) return Promise.reject(new LogBusError('CLOSED', 'this connection was closed'));
    if (this._status === 'disconnected' && !this.connectPromise) {
      return Promise.reject(new LogBusError('CONNECTION_LOST', `not connected to the broker at ${this.address}; call connect() first`));
    }
    return new Promise<void>((resolve, reject) => {
      const w = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new LogBusError('CONNECTION_LOST', `the broker at ${this.address} has been unreachable for ${this.outageWaitMs} ms`));
      }, this.outageWaitMs);
      this.waiters.add(w);
    });
  }

  /** Requests, answers and control frames: someone waits for each, so they leave at the end of this job. */
  private send(frame: Buffer): void {
    this.outbox?.sendSoon(frame);
  }

  private allocRequestId(): number {
    for (;;) {
      const id = this.nextRequestId;
      this.nextRequestId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.pending.has(id) && !this.rpcCalls.has(id)) return id;
    }
  }

  /** Sends a request on the current socket and waits for its answer (ERROR frames reject). */
  private rawCall(build: (requestId: number) => Buffer): Promise<Frame> {
    if (!this.outbox) return Promise.reject(new LogBusError('CONNECTION_LOST', `not connected to the broker at ${this.address}`));
    const id = this.allocRequestId();
    const frame = build(id);
    return new Promise<Frame>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send(frame);
    });
  }

  /** A request made by the user: waits for the connection (bounded), respects back-pressure. */
  private async call(build: (requestId: number) => Buffer): Promise<Frame> {
    // fast path: connected and room in the socket, no extra promise
    if (this._status === 'connected' && this.outbox && this.outbox.pendingBytes <= this.highWaterBytes) return this.rawCall(build);
    await this.whenConnected();
    while (this.outbox && this.outbox.pendingBytes > this.highWaterBytes) {
      await new Promise<void>(r => this.drainWaiters.push(r));
    }
    return this.rawCall(build);
  }

  private onData(socket: Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    this.lastSeen = Date.now();
    let frames: Frame[];
    try {
      frames = this.decoder!.push(chunk);
    } catch (e) {
      this.logger.warn(`bad data from the broker at ${this.address}: ${(e as Error).message}; reconnecting`);
      socket.destroy();
      return;
    }
    for (const f of frames) {
      try {
        this.onFrame(f);
      } catch (e) {
        this.logger.warn(`bad ${frameTypeName(f.type)} from the broker at ${this.address}: ${(e as Error).message}; reconnecting`);
        socket.destroy();
        return;
      }
    }
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case FrameType.DELIVER:
        for (const d of dec.deliver(f.body, this.epoch)) this.onDelivery(d);
        return;
      case FrameType.RPC_INCOMING:
        return this.onRpcIncoming(dec.rpcIncoming(f.body));
      case FrameType.RPC_REPLY: {
        const b = dec.rpcReply(f.body);
        const h = this.rpcCalls.get(f.requestId);
        if (!h) return;
        if (b.done) this.rpcCalls.delete(f.requestId);
        h.reply(b.value, b.done);
        return;
      }
      case FrameType.RPC_ERROR: {
        const err = errorFromBody(dec.error(f.body));
        const h = this.rpcCalls.get(f.requestId);
        this.rpcCalls.delete(f.requestId);
        h?.error(err);
        return;
      }
      case FrameType.PING:
        dec.empty(f.body, 'PING');
        this.send(enc.empty(FrameType.PONG, f.requestId));
        return;
      case FrameType.PONG:
        return;
      case FrameType.ERROR: {
        const err = errorFromBody(dec.error(f.body));
        const p = this.pending.get(f.requestId);
        const rpc = p ? undefined : this.rpcCalls.get(f.requestId);
        if (rpc) {
          this.rpcCalls.delete(f.requestId);
          rpc.error(err);
          return;
        }
        if (!p) {
          // Unsolicited (request id 0): the broker refuses this connection as a whole (e.g. too many connections).
          this.logger.warn(`broker at ${this.address}: ${err.message}`);
          if (f.requestId === 0) {
            for (const q of this.pending.valuesList()) q.reject(err);
            this.pending.clear();
          }
          return;
        }
        this.pending.delete(f.requestId);
        p.reject(err);
        return;
      }
      default: {
        const p = this.pending.get(f.requestId);
        if (!p) throw new LogBusError('PROTOCOL', `unexpected ${frameTypeName(f.type)} for request ${f.requestId}`);
        this.pending.delete(f.requestId);
        p.resolve(f);
      }
    }
  }

  private onDelivery(d: WireDelivery): void {
    const e = d.kind === TARGET_SUBSCRIPTION ? this.subs.get(d.targetId) : this.consumers.get(d.targetId);
    if (!e) {
      // unsubscribed meanwhile: free its buffer; a closed consumer's messages go back to the group by themselves
      if (d.kind === TARGET_SUBSCRIPTION) this.queueDone(d.targetId, d);
      return;
    }
    if (!e.live) (e.early ??= []).push(d);
    else this.runHandler(e.onMessage, d);
  }

  /** Hands over deliveries that came before the caller got its object: after its await has resumed. */
  private goLive(e: SubEntry | ConsumerEntry): void {
    e.live = true;
    const early = e.early;
    e.early = undefined;
    if (early?.length) setImmediate(() => early.forEach(d => this.runHandler(e.onMessage, d)));
  }

  /** Runs a caller's handler (delivery, request) with its argument: no closure per message; a throw is logged. */
  private runHandler<A>(handler: (arg: A) => void, arg: A): void {
    try {
      handler(arg);
    } catch (e) {
      this.logger.warn(`a message handler threw synchronously: ${(e as Error).message}`);
    }
  }

  private onRpcIncoming(b: ReturnType<typeof dec.rpcIncoming>): void {
    const e = this.responders.get(b.serveId);
    if (!e) return;
    const epoch = this.epoch;
    let finished = false;
    this.runHandler(e.onRequest, {
      pattern: b.pattern,
      value: b.value,
      reply: (value: Buffer, done: boolean) => {
        if (finished || epoch !== this.epoch) return;
        if (done) finished = true;
        this.send(enc.rpcRespond({ incomingId: b.incomingId, done, value }));
      },
    });
  }

  private queueId(map: Map<number, number[]>, targetId: number, id: number): void {
    let ids = map.get(targetId);
    if (!ids) map.set(targetId, (ids = []));
    ids.push(id);
    this.outbox?.schedule();
  }

  /** A push delivery is done: counted once, for the next flush. */
  private queueDone(subId: number, d: WireDelivery): void {
    const charge = d.charge;
    if (charge < 0) return;
    d.charge = -1;
    const done = this.dones.get(subId);
    if (done) {
      done.count++;
      done.bytes += charge;
    } else {
      this.dones.set(subId, { count: 1, bytes: charge });
    }
    this.doneBytes += charge;
    if (this.doneBytes >= DONE_EARLY_BYTES && !this.doneEarly) {
      this.doneEarly = true;
      queueMicrotask(this.flushDoneEarly);
    }
    this.outbox?.schedule();
  }

  private flushBatches(): void {
    const outbox = this.outbox;
    this.doneBytes = 0;
    if (!outbox) return;
    for (const [target, ids] of this.acks) {
      for (let i = 0; i < ids.length; i += MAX_IDS_PER_FRAME) outbox.send(enc.ids(FrameType.ACK, target, ids.slice(i, i + MAX_IDS_PER_FRAME)));
    }
    this.acks.clear();
    for (const [subId, done] of this.dones) outbox.send(enc.done(subId, done.count, done.bytes));
    this.dones.clear();
    for (const [target, items] of this.nacks) {
      for (let i = 0; i < items.length; i += 256) outbox.send(enc.nack(target, items.slice(i, i + 256)));
    }
    this.nacks.clear();
  }

  private isCurrent(d: Delivery): boolean {
    return (d as WireDelivery).epoch === this.epoch && this.outbox !== undefined;
  }

  // ───────────────────────────── BusConnection ─────────────────────────────

  async produce(topic: string, messages: OutgoingMessage[]): Promise<ProduceResult[]> {
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new LogBusError('INVALID_ARGUMENT', 'produce needs at least one message');
    }
    if (messages.length > LIMITS.maxBatchMessages) {
      throw new LogBusError('INVALID_ARGUMENT', `a batch holds at most ${LIMITS.maxBatchMessages} messages, got ${messages.length}`);
    }
    const frame = enc.produce(0, topic, messages);
    if (frame.length - 4 > this.maxFrameBytes) {
      throw new LogBusError('MESSAGE_TOO_LARGE', `the batch encodes to ${frame.length - HEADER_BYTES} bytes, above the broker's frame limit of ${this.maxFrameBytes}`);
    }
    const reply = await this.call(id => {
      frame.writeUInt32BE(id, 6); // encoded once, before the wait; only the request id changes
      return frame;
    });
    return dec.produced(reply.body).map(offset => ({ topic, offset }));
  }

  async subscribe(spec: SubscribeSpec, onMessage: (d: Delivery) => void): Promise<Subscription> {
    const subId = this.nextTargetId++;
    // Registered before the answer: deliveries may arrive in the same read as the OK.
    const entry: SubEntry = { spec: { ...spec }, onMessage };
    this.subs.set(subId, entry);
    try {
      await this.call(id => enc.subscribe(id, { subId, pattern: spec.pattern, queue: spec.queue, bufferBytes: spec.bufferBytes }));
      this.goLive(entry);
    } catch (e) {
      this.subs.delete(subId);
      throw e;
    }
    return {
      done: d => {
        if (this.isCurrent(d)) this.queueDone(subId, d as WireDelivery);
      },
      unsubscribe: async () => {
        if (!this.subs.delete(subId) || this._status !== 'connected') return;
        await this.rawCall(id => enc.target(FrameType.UNSUBSCRIBE, id, subId)).catch(ignoreLost);
      },
    };
  }

  async consume(spec: ConsumeSpec, onMessage: (d: Delivery) => void): Promise<Consumer> {
    const cid = this.nextTargetId++;
    const entry: ConsumerEntry = { spec: { ...spec }, onMessage, paused: false };
    // Registered before the answer: deliveries may arrive in the same read as the OK.
    this.consumers.set(cid, entry);
    try {
      await this.call(id => enc.consume(id, cid, spec));
      this.goLive(entry);
    } catch (e) {
      this.consumers.delete(cid);
      throw e;
    }
    return {
      ack: d => {
        if (this.isCurrent(d)) this.queueId(this.acks, cid, d.id);
      },
      nack: (d, error) => {
        if (!this.isCurrent(d)) return;
        let list = this.nacks.get(cid);
        if (!list) this.nacks.set(cid, (list = []));
        list.push({ id: d.id, error: String(error).slice(0, 4096) });
        this.outbox?.schedule();
      },
      pause: () => {
        entry.paused = true;
        if (this._status === 'connected') this.send(enc.target(FrameType.PAUSE, 0, cid));
      },
      close: async () => {
        if (!this.consumers.delete(cid) || this._status !== 'connected') return;
        await this.rawCall(id => enc.target(FrameType.CONSUMER_CLOSE, id, cid)).catch(ignoreLost);
      },
    };
  }

  async serveRpc(pattern: string, onRequest: (req: RpcIncoming) => void): Promise<{ close(): Promise<void> }> {
    const sid = this.nextTargetId++;
    const responder: ResponderEntry = { pattern, onRequest };
    this.responders.set(sid, responder);
    try {
      await this.call(id => enc.serveRpc(id, sid, pattern));
      responder.live = true;
    } catch (e) {
      this.responders.delete(sid);
      throw e;
    }
    return {
      close: async () => {
        if (!this.responders.delete(sid) || this._status !== 'connected') return;
        await this.rawCall(id => enc.target(FrameType.SERVE_CLOSE, id, sid)).catch(ignoreLost);
      },
    };
  }

  request(pattern: string, value: Buffer, handler: RpcReplyHandler): RpcCall {
    let cancelled = false;
    let sentOn: { id: number; epoch: number } | undefined;
    const go = () => {
      if (cancelled) return;
      const id = this.allocRequestId();
      this.rpcCalls.set(id, handler);
      sentOn = { id, epoch: this.epoch };
      this.send(enc.request(id, pattern, value));
    };
    if (this._status === 'connected') go();
    else this.whenConnected().then(go, (err: Error) => !cancelled && handler.error(err));
    return {
      cancel: () => {
        cancelled = true;
        if (!sentOn || sentOn.epoch !== this.epoch || !this.rpcCalls.has(sentOn.id)) return;
        this.rpcCalls.delete(sentOn.id);
        this.send(enc.empty(FrameType.CANCEL, sentOn.id));
      },
    };
  }

  async read(topic: string, from: number | 'earliest', max: number): Promise<ReadMessage[]> {
    return dec.messages((await this.call(id => enc.read(id, { topic, from, max }))).body);
  }

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    await this.call(id => enc.createTopic(id, name, config));
  }

  async topics(): Promise<TopicInfo[]> {
    return dec.json<TopicInfo[]>((await this.call(id => enc.empty(FrameType.TOPICS, id))).body);
  }

  async groups(topic: string): Promise<GroupInfo[]> {
    return dec.json<GroupInfo[]>((await this.call(id => enc.str(FrameType.GROUPS, id, topic))).body);
  }

  async resetGroup(topic: string, group: string, to: ConsumeFrom): Promise<void> {
    await this.call(id => enc.resetGroup(id, { topic, group, to }));
  }

  async stats(): Promise<BusStats> {
    return dec.json<BusStats>((await this.call(id => enc.empty(FrameType.STATS, id))).body);
  }

  /** Waits (bounded) for calls in flight, sends pending acks, then disconnects. */
  close(): Promise<void> {
    this.closePromise ??= this.shutdown();
    return this.closePromise;
  }

  private async shutdown(): Promise<void> {
    // Calls already sent (a produce waiting for its offset) get their answer first, within the outage wait.
    const deadline = Date.now() + this.outageWaitMs;
    while (this.pending.size > 0 && this.socket && Date.now() < deadline) await new Promise(r => setTimeout(r, 5));
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const w of [...this.waiters]) w.reject(new LogBusError('CLOSED', 'the connection was closed'));
    this.waiters.clear();
    const socket = this.socket;
    if (socket) {
      this.outbox?.flush();
      await new Promise<void>(resolve => {
        const t = setTimeout(() => {
          socket.destroy();
          resolve();
        }, 1000);
        socket.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        socket.end();
      });
    }
    this.setStatus('disconnected');
  }
}

function ignoreLost(e: unknown): void {
  if (isLogBusError(e, 'CONNECTION_LOST') || isLogBusError(e, 'CLOSED')) return;
  throw e;
}

/** Factory form for lib/connection/factory.ts. */
export function createWireConnection(options: ResolvedOptions, tuning?: WireClientTuning): WireConnection {
  return new WireConnection(options, tuning);
}
