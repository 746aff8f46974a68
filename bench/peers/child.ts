// A forked bench process, driven over IPC.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { sleep } from './common.js';
import type { IpcMessage } from './common.js';
import { CHILD_DIR, PROF_DIR, cfg } from './config.js';

type Waiter = { match: (m: IpcMessage) => boolean; resolve: (m: IpcMessage) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };

/** A forked bench process: request/response over IPC, matched by type and tag. */
export class Child {
  readonly proc: ChildProcess;
  private backlog: IpcMessage[] = [];
  private waiters: Waiter[] = [];
  readonly done = new Map<string, IpcMessage>();
  exited = false;
  fatal?: string;
  /** How long close() waits before SIGKILL (a deliberately blocked subscriber gets less). */
  graceMs = 5000;

  constructor(
    script: string,
    args: string[],
    readonly label: string,
    profile = false,
  ) {
    const execArgv = profile ? ['--cpu-prof', '--cpu-prof-dir', path.join(PROF_DIR, label)] : [];
    this.proc = fork(path.join(CHILD_DIR, script), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    this.proc.on('message', m => this.onMessage(m as IpcMessage));
    this.proc.on('exit', (code, sig) => {
      this.exited = true;
      this.failAll(new Error(`${label} exited (code ${code}, signal ${sig})${this.fatal ? `: ${this.fatal}` : ''}`));
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  private failAll(err: Error) {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  private onMessage(m: IpcMessage) {
    if (m?.type === 'events-done' && m.tag) this.done.set(m.tag, m);
    if (m?.type === 'fatal' || m?.type === 'error') {
      this.fatal = String(m.error).split('\n').slice(0, 3).join(' | ');
      this.failAll(new Error(`${this.label}: ${this.fatal}`));
      return;
    }
    const i = this.waiters.findIndex(w => w.match(m));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(m);
    } else if (m?.type !== 'events-done') {
      this.backlog.push(m);
      if (this.backlog.length > 100) this.backlog.shift(); // late replies nobody waits for
    }
  }

  waitFor(type: string, pred: (m: IpcMessage) => boolean = () => true, timeoutMs = cfg.phaseTimeoutMs): Promise<IpcMessage> {
    const match = (m: IpcMessage) => m?.type === type && pred(m);
    const bi = this.backlog.findIndex(match);
    if (bi >= 0) return Promise.resolve(this.backlog.splice(bi, 1)[0]);
    if (this.exited) return Promise.reject(new Error(`${this.label} already exited${this.fatal ? `: ${this.fatal}` : ''}`));
    return new Promise((resolve, reject) => {
      const w: Waiter = { match, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.label}: timeout waiting for ${type}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  send(m: IpcMessage) {
    if (!this.exited && this.proc.connected) this.proc.send(m);
  }

  async close(graceMs = this.graceMs) {
    if (this.exited) return;
    this.send({ type: 'close' });
    const t = Date.now();
    while (!this.exited && Date.now() - t < graceMs) await sleep(25);
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}
