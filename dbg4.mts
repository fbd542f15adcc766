import { spawn } from 'node:child_process';
import { runRaw } from './bench/lookup/raw-client.ts';
const child = spawn(process.execPath, ['--import', 'tsx', 'bench/lookup/trivial-server.ts'], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise<number>((res) => child.stdout!.once('data', (d) => res(Number(String(d).trim()))));
for (const rate of [200, 2000]) {
  const r = await runRaw({ host: '127.0.0.1', port, connections: 2, durationS: 2, rate, pipelining: 1, path: () => '/x' });
  const s = r.latenciesMs.sort();
  console.log(rate, r.requests, 'p50', s[Math.floor(s.length / 2)], 'max', s[s.length - 1]);
}
child.kill();
