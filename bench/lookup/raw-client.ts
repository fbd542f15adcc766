import { connect, type Socket } from 'node:net';

/**
 * A minimal HTTP/1.1 load generator for bench:lookup: keep-alive GETs over
 * raw sockets, responses framed by Content-Length (every API answer has
 * one), nothing else. It exists because autocannon costs this machine more
 * CPU per request than the API does (bench-results/lookup.json, generator
 * CPU), so on two shared cores it, not the API, sets the ceiling.
 *
 * Fixed rate is open-loop and evenly paced: every millisecond it sends what
 * is due by then (rate/1000 requests), on the connection with the fewest in
 * flight (pipelined when all are busy), whatever the answers do. Latency is
 * measured from the write and, to expose queueing the pacing hid
 * (coordinated omission), from when the request was due.
 */

export interface RawOptions {
  host: string;
  port: number;
  connections: number;
  durationS: number;
  /** Requests per second, evenly paced; undefined: closed loop, `pipelining` in flight per connection. */
  rate?: number;
  pipelining: number;
  path: () => string;
}

export interface RawResult {
  requests: number;
  non2xx: number;
  errors: number;
  /** ms from write to complete response. */
  latenciesMs: Float64Array;
  /** ms from when the request was due (fixed rate only; equals latenciesMs in closed loop). */
  dueLatenciesMs: Float64Array;
}

const CRLF2 = Buffer.from('\r\n\r\n');

class Conn {
  readonly sent: { at: number; due: number }[] = [];
  private buf: Buffer = Buffer.alloc(0);

  constructor(
    readonly socket: Socket,
    private readonly onResponse: (c: Conn, status: number, sentAt: number, due: number) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.read(chunk));
  }

  send(path: string, due: number): void {
    this.sent.push({ at: performance.now(), due });
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  }

  private read(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      const end = this.buf.indexOf(CRLF2);
      if (end < 0) return;
      const head = this.buf.toString('latin1', 0, end);
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!m) throw new Error(`response without Content-Length: ${head.slice(0, 200)}`);
      const total = end + 4 + Number(m[1]);
      if (this.buf.length < total) return;
      const status = Number(head.slice(9, 12));
      this.buf = this.buf.subarray(total);
      const req = this.sent.shift()!;
      this.onResponse(this, status, req.at, req.due);
    }
  }
}

export async function runRaw(o: RawOptions): Promise<RawResult> {
  const lat: number[] = [];
  const dueLat: number[] = [];
  let requests = 0;
  let non2xx = 0;
  let errors = 0;
  let stopping = false;
  let start = 0;
  let refill: (c: Conn) => void;
  const onResponse = (c: Conn, status: number, at: number, due: number) => {
    const now = performance.now();
    requests++;
    if (status >= 200 && status < 300) {
      lat.push(now - at);
      dueLat.push(now - due);
    } else {
      non2xx++;
    }
    if (!stopping) refill!(c);
  };

  const conns = await Promise.all(Array.from({ length: o.connections }, () => new Promise<Conn>((resolve, reject) => {
    const socket = connect(o.port, o.host);
    const conn = new Conn(socket, onResponse);
    socket.once('connect', () => resolve(conn));
    socket.once('error', reject);
  })));
  for (const c of conns) c.socket.on('error', () => { errors++; });

  start = performance.now();
  const end = start + o.durationS * 1000;
  let timer: NodeJS.Timeout | undefined;
  if (o.rate === undefined) {
    refill = (c) => { if (performance.now() < end) c.send(o.path(), performance.now()); };
    for (const c of conns) for (let i = 0; i < o.pipelining; i++) c.send(o.path(), performance.now());
  } else {
    const interval = 1000 / o.rate;
    let due = 0;
    // Due requests wait here when every connection has one in flight: HTTP
    // pipelining would let one slow answer hold up the ones behind it on the
    // same socket, which is the generator's artefact, not the server's.
    const waiting: number[] = [];
    let idle = [...conns];
    refill = (c) => {
      const next = waiting.shift();
      if (next !== undefined) c.send(o.path(), next);
      else idle.push(c);
    };
    const tick = () => {
      const now = performance.now();
      const until = Math.min(now, end);
      while (start + due * interval <= until) {
        const c = idle.pop();
        if (c) c.send(o.path(), start + due * interval);
        else waiting.push(start + due * interval);
        due++;
      }
      if (now < end) timer = setTimeout(tick, 1);
    };
    tick();
  }

  await new Promise((resolve) => setTimeout(resolve, o.durationS * 1000));
  stopping = true;
  if (timer) clearTimeout(timer);
  // Let what is in flight finish (bounded), so its latencies count.
  const drainUntil = performance.now() + 5_000;
  while (conns.some((c) => c.sent.length > 0) && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  errors += conns.reduce((a, c) => a + c.sent.length, 0);
  for (const c of conns) c.socket.destroy();
  return { requests, non2xx, errors, latenciesMs: Float64Array.from(lat), dueLatenciesMs: Float64Array.from(dueLat) };
}
