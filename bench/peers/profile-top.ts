// Top frames of V8 CPU profiles (from `run.js --cpu-prof`), by self time.
//   node .build/bench/peers/profile-top.js bench/results/prof-<time> [--top 15]
// Walks the directory, prints one table per .cpuprofile file.
import fs from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

function files(p: string): string[] {
  if (fs.statSync(p).isFile()) return [p];
  return fs.readdirSync(p).flatMap(e => files(path.join(p, e)));
}

function frameName(n: ProfileNode, root: string): string {
  const f = n.callFrame;
  const where = f.url ? `${f.url.replace(/^file:\/\//, '').replace(root, '')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
}

function top(file: string, count: number, root: string): string {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(prof.nodes.map(n => [n.id, n]));
  // Self time per node from samples x time deltas (hitCount lacks the time weight).
  const self = new Map<number, number>();
  const samples = prof.samples ?? [];
  const deltas = prof.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < samples.length; i++) {
    const dt = Math.max(0, deltas[i] ?? 0);
    self.set(samples[i], (self.get(samples[i]) ?? 0) + dt);
    total += dt;
  }
  const byFrame = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const name = frameName(n, root);
    byFrame.set(name, (byFrame.get(name) ?? 0) + us);
  }
  const idle = byFrame.get('(idle)') ?? 0;
  const busy = total - idle;
  const rows = [...byFrame.entries()]
    .filter(([k]) => k !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([k, us]) => `  ${((us / (busy || 1)) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`);
  return `${path.relative(process.cwd(), file)}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (% of busy)\n${rows.join('\n')}`;
}

const target = process.argv[2];
if (!target) {
  console.error('usage: node .build/bench/peers/profile-top.js <dir-or-file.cpuprofile> [--top N]');
  process.exit(2);
}
const ti = process.argv.indexOf('--top');
const count = ti > 0 ? Number(process.argv[ti + 1]) : 15;
const root = path.resolve(process.cwd()) + '/';
for (const f of files(target).filter(f => f.endsWith('.cpuprofile'))) console.log(top(f, count, root) + '\n');
