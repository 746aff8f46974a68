/** The `logbus` command, run as child processes against a broker it started itself. */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_CERT, TEST_KEY } from './fixtures/tls-cert.js';
import { built, type Child, killAll, spawnNode } from './children.js';
import { tempDir, waitFor } from './helpers.js';

let tmp: ReturnType<typeof tempDir>;
let brokerProc: Child;
let url: string;
const TOKEN = 'cli-secret';

function logbus(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise(resolve => {
    execFile(process.execPath, [built('lib/cli/main.js'), ...args], { env: { ...process.env, LOGBUS_TOKEN: '' }, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  tmp = tempDir();
  brokerProc = spawnNode(built('lib/cli/main.js'), ['broker', '--data', tmp.dir, '--port', '0', '--token', TOKEN, '--fsync', 'never']);
  const line: string = await brokerProc.waitLine('broker listening', l => typeof l === 'string' && l.includes('listening on'));
  url = /logbus:\/\/[\d.]+:\d+/.exec(line)![0];
});

afterAll(async () => {
  await killAll();
  tmp.remove();
});

test('publish, topics, tail and groups against a running broker', async () => {
  const p1 = await logbus('publish', 'orders', '{"id":1,"total":9.5}', '--key', 'cust-7', '--url', url, '--token', TOKEN);
  expect(p1).toMatchObject({ code: 0, stdout: 'published to orders at offset 0\n' });
  const p2 = await logbus('publish', 'orders', '"second"', '--header', 'source=cli', '--url', url, '--token', TOKEN);
  expect(p2.stdout).toBe('published to orders at offset 1\n');

  const topics = await logbus('topics', '--url', url, '--token', TOKEN);
  expect(topics.code).toBe(0);
  const [head, row] = topics.stdout.trim().split('\n');
  expect(head.split(/\s+/)).toEqual(['TOPIC', 'DURABLE', 'EARLIEST', 'NEXT', 'MESSAGES', 'BYTES']);
  expect(row.split(/\s+/).slice(0, 5)).toEqual(['orders', 'yes', '0', '2', '2']);
  // aligned: every column starts where its header starts
  expect(row.indexOf('yes')).toBe(head.indexOf('DURABLE'));

  const tail = await logbus('tail', 'orders', '--no-follow', '--url', url, '--token', TOKEN);
  const lines = tail.stdout.trim().split('\n').map(l => JSON.parse(l));
  expect(lines.map(l => [l.offset, l.key, l.headers, l.data])).toEqual([
    [0, 'cust-7', {}, { id: 1, total: 9.5 }],
    [1, undefined, { source: 'cli' }, 'second'],
  ]);
  const fromOne = await logbus('tail', 'orders', '--from', '1', '--no-follow', '--url', url, '--token', TOKEN);
  expect(fromOne.stdout.trim().split('\n')).toHaveLength(1);

  // a consumer group, from a member process, shows with its lag
  const member = spawnNode(built('test/wire/fixtures/member.js'), [url, 'consume', 'orders', 'billing', '0'], { LOGBUS_TOKEN: TOKEN });
  let last = '';
  await waitFor('groups shows billing with lag 0', async () => {
    last = (await logbus('groups', 'orders', '--url', url, '--token', TOKEN)).stdout;
    return /^billing\s+2\s+0\s+0$/m.test(last);
  }).catch(e => {
    throw new Error(`${e.message}; last output ${JSON.stringify(last)}; member said ${JSON.stringify(member.lines)} ${member.stderr.join('')}`);
  });
});

test('a follow-mode tail prints messages published after it started', async () => {
  const tail = spawnNode(built('lib/cli/main.js'), ['tail', 'live', '--from', 'latest', '--url', url, '--token', TOKEN]);
  await new Promise(r => setTimeout(r, 300)); // let it reach the end of the (empty) topic
  await logbus('publish', 'live', '{"n":1}', '--url', url, '--token', TOKEN);
  await tail.waitLine('followed message', (l: any) => l?.data?.n === 1);
  tail.proc.kill('SIGINT');
  expect(await tail.exited).toBe(0);
});

test('errors: wrong token, unreachable broker, bad JSON, unknown option; each exits non-zero with a clear message', async () => {
  const wrong = await logbus('topics', '--url', url, '--token', 'nope');
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toMatch(/UNAUTHORIZED/);
  const none = await logbus('topics', '--url', url);
  expect(none.code).toBe(1);
  expect(none.stderr).toMatch(/UNAUTHORIZED: this broker requires a token/);
  const down = await logbus('topics', '--url', 'logbus://127.0.0.1:1');
  expect(down.code).toBe(1);
  expect(down.stderr).toMatch(/CONNECTION_LOST: cannot reach the logbus broker at 127.0.0.1:1/);
  const bad = await logbus('publish', 'orders', '{oops', '--url', url, '--token', TOKEN);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/must be JSON/);
  const invalid = await logbus('publish', 'bad topic', '1', '--url', url, '--token', TOKEN);
  expect(invalid.code).toBe(1);
  expect(invalid.stderr).toMatch(/INVALID_TOPIC/);
  const unknown = await logbus('topics', '--bogus');
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/bogus/);
  const help = await logbus('groups', '--help');
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/Usage: logbus groups TOPIC/);
});

test('SIGTERM shuts the broker down cleanly', async () => {
  brokerProc.proc.kill('SIGTERM');
  expect(await brokerProc.exited).toBe(0);
  expect(brokerProc.lines).toContain('logbus broker stopped');
  // the data survives: a new broker on the same directory still has the topic
  const again = spawnNode(built('lib/cli/main.js'), ['broker', '--data', tmp.dir, '--port', '0', '--fsync', 'never']);
  const line: string = await again.waitLine('broker listening', l => typeof l === 'string' && l.includes('listening on'));
  const topics = await logbus('topics', '--url', /logbus:\/\/[\d.]+:\d+/.exec(line)![0]);
  expect(topics.stdout).toMatch(/^orders\s+yes\s+0\s+2/m);
  again.proc.kill('SIGTERM');
  expect(await again.exited).toBe(0);
});

test('a TLS broker from the CLI, reached with a logbus://…?ca= url', async () => {
  const certFile = join(tmp.dir, 'cert.pem');
  const keyFile = join(tmp.dir, 'key.pem');
  writeFileSync(certFile, TEST_CERT);
  writeFileSync(keyFile, TEST_KEY);
  const tlsBroker = spawnNode(built('lib/cli/main.js'), ['broker', '--data', join(tmp.dir, 'tls-data'), '--port', '0', '--tls-cert', certFile, '--tls-key', keyFile]);
  const line: string = await tlsBroker.waitLine('TLS broker listening', l => typeof l === 'string' && l.includes('listening on'));
  expect(line).toContain('(TLS)');
  const tlsUrl = /logbus:\/\/[\d.]+:\d+/.exec(line)![0];
  const ok = await logbus('publish', 'secure', '{"a":1}', '--url', `${tlsUrl}?ca=${certFile}`);
  expect(ok).toMatchObject({ code: 0, stdout: 'published to secure at offset 0\n' });
  const untrusted = await logbus('topics', '--url', `${tlsUrl}?tls=true`);
  expect(untrusted.code).toBe(1);
  expect(untrusted.stderr).toMatch(/CONNECTION_LOST/);
  tlsBroker.proc.kill('SIGTERM');
  expect(await tlsBroker.exited).toBe(0);
});
