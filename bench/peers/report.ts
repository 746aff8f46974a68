// The tables, the targets of issue 5, and bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { INTERLEAVE, QUICK, REPO, cfg, startedAt } from './config.js';
import type { Res } from './config.js';
import { REDIS_HOST, REDIS_PORT } from './transports.js';

function pkgVersion(name: string): string | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}
export function versions() {
  const cmd = (c: string, a: string[]) => {
    const r = spawnSync(c, a, { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  const redisInfo = cmd('redis-cli', ['-h', REDIS_HOST, '-p', String(REDIS_PORT), 'INFO', 'server']);
  return {
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    redisServer: redisInfo ? (/redis_version:(\S+)/.exec(redisInfo)?.[1] ?? null) : null,
    natsServer: cmd('nats-server', ['--version']),
    nestjsLogbus: JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')).version,
    gitCommit: cmd('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']),
    packages: Object.fromEntries(['@nestjs/core', '@nestjs/microservices', 'rxjs', 'ioredis', '@nats-io/transport-node', '@nats-io/jetstream', 'typescript'].map(p => [p, pkgVersion(p)])),
  };
}

const f0 = (x: unknown) => (typeof x !== 'number' || !Number.isFinite(x) ? '-' : Math.round(x).toLocaleString('en-US'));
const f2 = (x: unknown) => (typeof x !== 'number' || !Number.isFinite(x) ? '-' : x.toFixed(2));
const f1 = (x: unknown) => (typeof x !== 'number' || !Number.isFinite(x) ? '-' : x.toFixed(1));

function table(rows: string[][]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map(r => String(r[c] ?? '').length)));
  return rows.map(r => r.map((v, c) => (c === 0 ? String(v ?? '').padEnd(w[c]) : String(v ?? '').padStart(w[c]))).join('  ')).join('\n');
}

/** Value, 'n/a' when the transport cannot do it, 'err' when the scenario failed, '-' when not run. */
function cell(r: Res, obj: any, fmt: (x: unknown) => string, v: (o: any) => unknown, errKey: string): string {
  if (obj?.na) return 'n/a';
  if (obj) return fmt(v(obj));
  return r.errors?.[errKey] ? 'err' : '-';
}

function lostOf(r: Res): number {
  const parts = [...Object.values(r.events ?? {}), r.fanout, r.durablePull, r.slow?.alone].filter((x: any) => x && !x.na) as any[];
  return parts.reduce((a, e) => a + (e.lostAllReps ?? e.lost ?? 0), 0);
}

export interface Ratio {
  what: string;
  transport: string;
  ratio: number | null;
  target: string;
  ok: boolean | null;
}

function ratios(results: Res[], js: Res | null): Ratio[] {
  const by = (n: string) => results.find(r => r.transport === n && !r.skipped);
  const tcp = by('tcp');
  const redis = by('redis');
  const nats = by('nats');
  const out: Ratio[] = [];
  const add = (what: string, transport: string, a: unknown, b: unknown, target: number, cmp: 'ge' | 'le' = 'ge', label = `>= ${target}x`) => {
    const ratio = typeof a === 'number' && typeof b === 'number' && b > 0 && Number.isFinite(a) ? a / b : null;
    out.push({ what, transport, ratio, target: label, ok: ratio == null ? null : cmp === 'ge' ? ratio >= target : ratio <= target });
  };
  for (const name of ['logbus', 'logbus-broker']) {
    const l = by(name);
    if (!l) continue;
    add('events 100 B vs Nest TCP', name, l.events?.[100]?.deliveredPerSec, tcp?.events?.[100]?.deliveredPerSec, 3);
    add('events 100 B vs Nest Redis', name, l.events?.[100]?.deliveredPerSec, redis?.events?.[100]?.deliveredPerSec, 5);
    add('fan-out x4 vs Nest NATS', name, l.fanout?.deliveredPerSec, nats?.fanout?.deliveredPerSec, 4);
    add('RPC one at a time p50 / Nest TCP p50', name, l.rpcSeq?.p50Ms, tcp?.rpcSeq?.p50Ms, 1, 'le', '<= 1x');
    add('RPC 100 in flight vs Nest TCP', name, l.rpcConc?.rps, tcp?.rpcConc?.rps, 2);
    add('durable pull x2 vs JetStream file publish c64', name, l.durablePull?.deliveredPerSec, js?.msgsPerSec, 5);
    const change = l.slow?.changePct;
    out.push({ what: 'slow subscriber: fast one\'s rate vs alone', transport: name, ratio: typeof change === 'number' ? change : null, target: '|change| < 10 %', ok: typeof change === 'number' ? Math.abs(change) < 10 : null });
    // Not the issue's target (that is "vs alone"): beside a second fast subscriber the fast one shares the 2 cores with it.
    const vsPeer = l.slow?.changeVsPeerPct;
    out.push({ what: 'slow subscriber: vs a fast peer (information)', transport: name, ratio: typeof vsPeer === 'number' ? vsPeer : null, target: '-', ok: null });
  }
  return out;
}

export function report(results: Res[], js: Res | null, loadavg: { start: number[]; end: number[] }): { text: string; ratios: Ratio[] } {
  const out: string[] = [];
  const say = (line: string) => out.push(line);
  const sizes = cfg.eventSizes;
  const head1 = ['transport', ...sizes.map(s => `events ${s}B/s`), 'rpc seq p50 ms', 'p99 ms', `rpc c${cfg.concurrency} req/s`, 'p50 ms', 'p99 ms', `fan-out x${cfg.subscribers} deliv/s`, 'lost'];
  const rows1 = [head1];
  const head2 = ['transport', `durable pull x${cfg.consumers} msg/s`, 'dup', `durable pub c${cfg.publishInflight} msg/s`, 'fast alone /s', 'w/ fast peer /s', 'w/ slow peer /s', 'vs alone %', 'vs fast peer %', 'slow ms/msg', 'broker RSS MB start/alone/w slow'];
  const rows2 = [head2];
  for (const r of results) {
    if (r.skipped) {
      rows1.push([r.transport, `skipped: ${r.skipped}`.slice(0, 90), ...Array(head1.length - 2).fill('')]);
      continue;
    }
    rows1.push([
      r.transport,
      ...sizes.map(s => cell(r, r.events?.[s], f0, o => o.deliveredPerSec, 'events/rpc')),
      cell(r, r.rpcSeq, f2, o => o.p50Ms, 'events/rpc'),
      cell(r, r.rpcSeq, f2, o => o.p99Ms, 'events/rpc'),
      cell(r, r.rpcConc, f0, o => o.rps, 'events/rpc'),
      cell(r, r.rpcConc, f2, o => o.p50Ms, 'events/rpc'),
      cell(r, r.rpcConc, f2, o => o.p99Ms, 'events/rpc'),
      cell(r, r.fanout, f0, o => o.deliveredPerSec, 'fanout'),
      String(lostOf(r)),
    ]);
    const rss = r.slow?.brokerRssMB;
    rows2.push([
      r.transport,
      cell(r, r.durablePull, f0, o => o.deliveredPerSec, 'durable') + (r.durablePull?.receivers && r.durablePull.receivers !== cfg.consumers ? ` (x${r.durablePull.receivers})` : ''),
      cell(r, r.durablePull, String, o => o.calls - o.delivered, 'durable'),
      r.durablePull?.na ? 'n/a' : cell(r, r.durablePublish, f0, o => o.rps, 'durable'),
      cell(r, r.slow, f0, o => o.alone?.deliveredPerSec, 'slow'),
      cell(r, r.slow, f0, o => o.withPeer?.deliveredPerSec, 'slow'),
      cell(r, r.slow, f0, o => o.withSlow?.deliveredPerSec, 'slow'),
      cell(r, r.slow, f1, o => o.changePct, 'slow'),
      cell(r, r.slow, f1, o => o.changeVsPeerPct, 'slow'),
      cell(r, r.slow, f2, o => o.slowMsPerMessage, 'slow'),
      r.slow?.na ? 'n/a' : rss ? `${f0(rss.before)} / ${f0(rss.peakAlone)} / ${f0(rss.peak)}` : '-',
    ]);
  }
  // Where the CPU went: every process of the measurement (user + system), per message handled.
  const head3 = ['transport', 'CPU us/msg: events 100B', `rpc c${cfg.concurrency}`, `fan-out x${cfg.subscribers}`, 'durable pull', `fan-out CPU ms: publisher / receivers / broker`];
  const rows3 = [head3];
  const us = (o: any) => (o?.cpu?.usPerMessage == null ? '-' : f1(o.cpu.usPerMessage));
  for (const r of results) {
    if (r.skipped) continue;
    const c = r.fanout?.cpu;
    const split = c ? `${c.publisher ?? '-'} / ${c.receivers.map((v: number | null) => v ?? '-').join(' ')} / ${c.broker ?? '-'}` : '-';
    rows3.push([r.transport, us(r.events?.[100]), us(r.rpcConc), us(r.fanout), us(r.durablePull), split]);
  }
  if (js) rows2.push(['JetStream file publish (raw)', '', '', js.error ? 'err' : f0(js.msgsPerSec), ...Array(head2.length - 4).fill('')]);
  const how = INTERLEAVE && cfg.reps > 1 ? `median of ${cfg.reps} interleaved rounds` : `median of ${cfg.reps} rep(s)`;
  say(`\nNest transports, one process per server/subscriber/client; ${how}${QUICK ? ' (quick)' : ''}`);
  say(`machine: ${os.cpus().length} CPUs, load average (1 min) ${loadavg.start[0]} at start, ${loadavg.end[0]} at end`);
  say(table(rows1));
  say('');
  say(table(rows2));
  say('');
  say(table(rows3));
  const rs = ratios(results, js);
  if (rs.length) {
    say('\nTargets (issue 5)');
    const rrows = [['target', 'transport', 'measured', 'goal', 'met']];
    for (const x of rs) rrows.push([x.what, x.transport, x.ratio == null ? '-' : x.what.startsWith('slow') ? `${x.ratio.toFixed(1)} %` : `${x.ratio.toFixed(2)}x`, x.target, x.ok == null ? '-' : x.ok ? 'yes' : 'NO']);
    say(table(rrows));
  }
  for (const r of results) for (const [k, e] of Object.entries(r.errors ?? {})) say(`error ${r.transport} ${k}: ${e}`);
  return { text: out.join('\n'), ratios: rs };
}


/**
 * bench/RESULTS.md keeps the latest figures with the machine, the versions and
 * the command. Only this benchmark's section ("## Side by side with Nest's own
 * transports", up to the next "## ") is replaced; the rest of the file is other
 * benchmarks' and stays as it is. Without the file or the section, it is added.
 */
export function writeResultsMd(text: string, command: string, v: ReturnType<typeof versions>, loadavg: { start: number[]; end: number[] }) {
  const file = path.join(REPO, 'bench', 'RESULTS.md');
  const heading = "## Side by side with Nest's own transports (`bench/peers`)";
  const section = [
    heading,
    '',
    `Run ${startedAt}: \`npx tsc -p tsconfig.json && ${command}\``,
    '',
    `Machine: ${v.cpus} x ${v.cpuModel}, ${v.os}, load average ${loadavg.start[0]} at start and ${loadavg.end[0]} at end. Node ${v.node}, Redis ${v.redisServer ?? '?'}, ${v.natsServer ?? 'nats-server ?'}, commit ${v.gitCommit ?? '?'}; ${Object.entries(v.packages).map(([k, x]) => `${k} ${x}`).join(', ')}.`,
    'Columns: bench/peers/README.md.',
    '',
    '```',
    text.trim(),
    '```',
    '',
    '',
  ].join('\n');
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmark results\n\n';
  const at = old.indexOf(heading);
  let md: string;
  if (at < 0) md = `${old.trimEnd()}\n\n${section}`;
  else {
    const next = old.indexOf('\n## ', at + heading.length);
    md = old.slice(0, at) + section + (next < 0 ? '' : old.slice(next + 1));
  }
  fs.writeFileSync(file, md);
  console.log(`updated the bench/peers section of ${path.relative(process.cwd(), file)}`);
}
