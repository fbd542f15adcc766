import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

/**
 * Real Debezium (3.0.8's PostgreSQL connector on Kafka Connect 3.9.1
 * standalone) for the benchmark and the opt-in integration test. The jars
 * are resolved from Maven Central into ~/.m2 by test/helpers/debezium-pom.xml
 * (nothing of Debezium is kept in the repository); the classpath is cached
 * in the OS temp dir (`shopstream-debezium/cp.txt`), keyed by the pom's content
 * and re-resolved (offline first) when a jar is gone from ~/.m2.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const POM = `${REPO}/test/helpers/debezium-pom.xml`;

export function debeziumClasspath(stateDir = `${tmpdir()}/shopstream-debezium`): string {
  mkdirSync(stateDir, { recursive: true });
  const pom = readFileSync(POM, 'utf8');
  const cp = `${stateDir}/cp.txt`;
  const stamp = `${stateDir}/cp.pom`;
  // ~/.m2 may have been cleaned since the classpath was written.
  const fresh = existsSync(cp) && existsSync(stamp) && readFileSync(stamp, 'utf8') === pom
    && readFileSync(cp, 'utf8').trim().split(':').every((jar) => existsSync(jar));
  if (!fresh) {
    const args = ['-q', '-B', '-f', POM, 'dependency:build-classpath', `-Dmdep.outputFile=${cp}`];
    // Offline first, so a warm ~/.m2 needs no network; else from Maven Central.
    try {
      execFileSync('mvn', ['-o', ...args], { stdio: 'ignore' });
    } catch {
      execFileSync('mvn', args, { stdio: ['ignore', 'inherit', 'inherit'] });
    }
    writeFileSync(stamp, pom);
  }
  return readFileSync(cp, 'utf8').trim();
}

/** A loopback port free right now (for Kafka Connect's REST listener, which must not collide with the stack's). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface DebeziumConnector {
  /** Connector name and Kafka topic prefix. */
  prefix: string;
  slot: string;
  publication: string;
  schema: string;
  /** JsonConverter schemas.enable for keys and values. */
  schemasEnable: boolean;
  /** Further connector properties (decimal.handling.mode, …). */
  extra?: Record<string, string>;
}

export interface DebeziumOptions {
  classpath: string;
  stateDir: string;
  brokers: string[];
  sourceUrl: string;
  /** Kafka Connect's REST port (loopback). */
  restPort: number;
  connectors: DebeziumConnector[];
  logFile?: string;
}

function props(o: Record<string, string>): string {
  return `${Object.entries(o).map(([k, v]) => `${k}=${v}`).join('\n')}\n`;
}

/** Starts one Connect standalone worker running every connector; the caller stops it with `stopDebezium`. */
export function startDebezium(o: DebeziumOptions): ChildProcess {
  mkdirSync(o.stateDir, { recursive: true });
  const tag = o.connectors.map((c) => c.prefix).join('_');
  const worker = `${o.stateDir}/worker-${tag}.properties`;
  writeFileSync(worker, props({
    'bootstrap.servers': o.brokers.join(','),
    'key.converter': 'org.apache.kafka.connect.json.JsonConverter',
    'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
    'offset.storage.file.filename': `${o.stateDir}/offsets-${tag}.dat`,
    'offset.flush.interval.ms': '1000',
    listeners: `http://127.0.0.1:${o.restPort}`,
  }));
  const url = new URL(o.sourceUrl);
  const files = o.connectors.map((c) => {
    const f = `${o.stateDir}/connector-${c.prefix}.properties`;
    writeFileSync(f, props({
      name: c.prefix, 'connector.class': 'io.debezium.connector.postgresql.PostgresConnector', 'tasks.max': '1',
      'database.hostname': url.hostname, 'database.port': url.port || '5432', 'database.user': decodeURIComponent(url.username || 'postgres'),
      'database.password': decodeURIComponent(url.password || 'unused'), 'database.dbname': url.pathname.slice(1),
      'topic.prefix': c.prefix, 'plugin.name': 'pgoutput', 'slot.name': c.slot,
      'publication.name': c.publication, 'publication.autocreate.mode': 'disabled',
      'snapshot.mode': 'no_data', 'schema.include.list': c.schema,
      'topic.creation.default.replication.factor': '1', 'topic.creation.default.partitions': '1',
      'key.converter': 'org.apache.kafka.connect.json.JsonConverter', 'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
      'key.converter.schemas.enable': String(c.schemasEnable), 'value.converter.schemas.enable': String(c.schemasEnable),
      ...c.extra,
    }));
    return f;
  });
  const out = o.logFile ? openSync(o.logFile, 'a') : 'ignore';
  return spawn('java', ['-Xms128m', '-Xmx768m', '-XX:TieredStopAtLevel=1', '-cp', o.classpath, 'org.apache.kafka.connect.cli.ConnectStandalone', worker, ...files], {
    stdio: ['ignore', out, out],
  });
}

export async function stopDebezium(java: ChildProcess | undefined): Promise<void> {
  if (!java || java.exitCode !== null || java.signalCode !== null) return;
  const exited = new Promise((r) => java.once('exit', r));
  java.kill('SIGTERM');
  const t = setTimeout(() => java.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}
