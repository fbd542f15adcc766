import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';

/**
 * A single-node KRaft broker of its own, for tests that need a broker that
 * has *just* started (or one they may kill): the jars of the local stack
 * (the Maven classpath scripts/stack.sh resolved into .stack/kafka), the
 * stack's server.properties with other ports and a temporary log dir.
 * Never the shared broker.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));

export interface ThrowawayKafka {
  port: number;
  brokers: string[];
  dir: string;
  /** The broker's JVM (SIGSTOP/SIGCONT in tests of a broker that stops answering). */
  pid: number;
  /** Resolves once a metadata request is answered; returns ms since spawn. */
  started: number;
  stop(): Promise<void>;
}

/**
 * `TEST_PORT_RANGE=lo-hi` keeps the throw-away servers inside a range of
 * one's own, when several checkouts run tests on one machine at once.
 */
export function testPortRange(env: NodeJS.ProcessEnv = process.env): { lo: number; hi: number } {
  const v = env.TEST_PORT_RANGE;
  // Below Linux's ephemeral range (32768-60999): a server restarted on a port in it can find the port
  // taken by some client's outgoing connection meanwhile ("Address already in use").
  if (v === undefined || v === '') return { lo: 20_000, hi: 28_999 };
  const m = /^(\d+)-(\d+)$/.exec(v);
  const [lo, hi] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!(lo >= 1024 && hi <= 65535 && lo <= hi)) throw new Error(`TEST_PORT_RANGE must be lo-hi (1024-65535), got ${JSON.stringify(v)}`);
  return { lo, hi };
}

export async function freePort(): Promise<number> {
  const { lo, hi } = testPortRange();
  for (let i = 0; i < 50; i++) {
    const port = lo + Math.floor(Math.random() * (hi - lo + 1));
    const ok = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error(`no free port in ${lo}-${hi}`);
}

export function kafkaClasspath(): string {
  const file = join(REPO, '.stack/kafka/classpath.txt');
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run stack:up\` once (it resolves the Kafka jars with Maven)`);
  return readFileSync(file, 'utf8').trim();
}

/** JVM arguments for a small test broker logging WARN and up to `<dir>/server.log` (writes its log4j.properties). */
export function kafkaJavaArgs(dir: string, classpath: string): string[] {
  writeFileSync(join(dir, 'log4j.properties'), 'log4j.rootLogger=WARN, f\nlog4j.appender.f=org.apache.log4j.FileAppender\n'
    + `log4j.appender.f.File=${dir}/server.log\nlog4j.appender.f.layout=org.apache.log4j.PatternLayout\nlog4j.appender.f.layout.ConversionPattern=[%d] %p %m (%c)%n\n`);
  return ['-Xms128m', '-Xmx512m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Djava.net.preferIPv4Stack=true',
    `-Dkafka.logs.dir=${dir}`, `-Dlog4j.configuration=file:${dir}/log4j.properties`, '-cp', classpath];
}

/** Starts a broker and resolves as soon as it answers a metadata request (the moment the demo's capture met it). */
export async function startThrowawayKafka(opts: { timeoutMs?: number } = {}): Promise<ThrowawayKafka> {
  const cp = kafkaClasspath();
  const [port, controller] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'throwaway-kafka-'));
  const props = readFileSync(join(REPO, 'stack/kafka/server.properties'), 'utf8')
    .replaceAll('@PORT@', String(port)).replaceAll('@CONTROLLER_PORT@', String(controller)).replaceAll('@STATE@', dir);
  writeFileSync(join(dir, 'server.properties'), props);
  const java = kafkaJavaArgs(dir, cp);
  // A leading '-' would be read by kafka-storage as an option, not as the id.
  const clusterId = randomBytes(16).toString('base64url').slice(0, 22).replace(/^-/, 'A');
  const fmt = spawnSync('java', [...java, 'kafka.tools.StorageTool', 'format', '--ignore-formatted', '-t', clusterId, '-c', join(dir, 'server.properties')], { encoding: 'utf8' });
  if (fmt.status !== 0) throw new Error(`kafka storage format failed: ${fmt.stderr || fmt.stdout}`);
  const t0 = Date.now();
  const child: ChildProcess = spawn('java', [...java, 'kafka.Kafka', join(dir, 'server.properties')], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const brokers = [`127.0.0.1:${port}`];
  const deadline = t0 + (opts.timeoutMs ?? 90_000);
  for (;;) {
    if (child.exitCode !== null) {
      const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000) : '';
      await stop();
      throw new Error(`throw-away kafka exited during start-up:\n${log}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error('throw-away kafka did not answer in time');
    }
    const admin = new kafkajs.Kafka({ clientId: 'probe', brokers, logLevel: kafkajs.logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 500, requestTimeout: 1000 }).admin();
    try {
      await admin.connect();
      const c = await admin.describeCluster();
      if (c.brokers.length > 0) return { port, brokers, dir, pid: child.pid!, started: Date.now() - t0, stop };
    } catch {
      // not yet
    } finally {
      await admin.disconnect().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
