import * as fs from 'node:fs';
import { join, resolve } from 'node:path';
import { LogBusError } from '../errors.js';

/** Lock files this process holds (a second open in the same process is LOCKED too). */
const held = new Set<string>();

/** A process's start time (clock ticks since boot, /proc/<pid>/stat field 22), or '' where /proc is missing. */
function startTime(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/** Is pid a live process? A zombie (killed, not yet reaped) counts as dead. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/**
 * Does the lock's recorded owner still run? The pid must be alive and, where
 * /proc tells, started at the recorded time: after a crash and restart (a
 * container, say) the same pid can belong to an unrelated process, or to us.
 */
function ownerRuns(path: string, pid: number, start: string): boolean {
  if (pid === process.pid) return held.has(path);
  if (!alive(pid)) return false;
  return start === '' || startTime(pid) === '' || startTime(pid) === start;
}

/**
 * `<dataDir>/LOCK` holds the owner's pid and start time. A running owner
 * (another process, or this one) makes open fail at once with LOCKED; a dead
 * owner's lock (kill -9) is taken over. Returns the release function.
 */
export function acquireLock(dataDir: string): () => void {
  const path = resolve(join(dataDir, 'LOCK'));
  const mine = `${process.pid} ${startTime(process.pid)}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(path, 'wx', 0o644);
      try {
        fs.writeSync(fd, mine);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      // Two processes taking over the same stale lock: the last writer wins; check it is us.
      if (fs.readFileSync(path, 'utf8') !== mine) continue;
      held.add(path);
      return () => {
        held.delete(path);
        try {
          if (fs.readFileSync(path, 'utf8') === mine) fs.unlinkSync(path);
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new LogBusError('STORAGE', `cannot create ${path}: ${(e as Error).message}`, { cause: e });
      }
    }
    let content: string;
    try {
      content = fs.readFileSync(path, 'utf8');
    } catch {
      continue; // released meanwhile: retry
    }
    const [pidText = '', start = ''] = content.trim().split(/\s+/);
    const owner = Number.parseInt(pidText, 10);
    if (Number.isInteger(owner) && owner > 0 && ownerRuns(path, owner, start)) {
      const who = owner === process.pid ? 'this process (open it once and share it)' : `process ${owner}`;
      throw new LogBusError(
        'LOCKED',
        `dataDir ${dataDir} is in use by ${who}; stop it or use another dataDir. If pid ${owner} is not a logbus process, delete ${path}`,
      );
    }
    // Dead owner (or unreadable pid): take the lock over.
    try {
      fs.unlinkSync(path);
    } catch {
      /* someone else took it over first: retry sees theirs */
    }
  }
  throw new LogBusError('LOCKED', `dataDir ${dataDir}: could not take ${path} over (contended); try again`);
}
