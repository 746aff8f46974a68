/** One clearly labelled line per event, so push, pull, dead letters and RPC are told apart at a glance. */
export function log(kind: 'push' | 'pull' | 'dlq' | 'rpc' | 'main', text: string): void {
  console.log(`${`[${kind}]`.padEnd(7)} ${text}`);
}
