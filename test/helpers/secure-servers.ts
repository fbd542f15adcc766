import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import { kafkaClasspath, kafkaJavaArgs } from './throwaway-kafka.ts';

/**
 * Throw-away servers with security switched on, for the secured end-to-end
 * test: one PKI (a self-signed CA and a server certificate for 127.0.0.1,
 * made with openssl, a Java truststore with keytool), a Postgres with
 * ssl=on that takes only TLS connections with passwords, a Redis with a TLS
 * port only and ACL users, and a KRaft broker whose one listener is
 * SASL_SSL with SCRAM users created by kafka-storage format --add-scram.
 * Never the shared stack's servers; ports from SECURE_TEST_PORTS
 * (default 41000-41999).
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PG_BIN = '/usr/lib/postgresql/15/bin';

function portRange(): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(process.env.SECURE_TEST_PORTS ?? '41000-41999');
  return m ? [Number(m[1]), Number(m[2])] : [41000, 41999];
}

export async function freePortInRange(): Promise<number> {
  const [lo, hi] = portRange();
  for (let i = 0; i < 100; i++) {
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

/** As `run`, without blocking the event loop: the servers start side by side, each polling its own readiness. */
function runAsync(cmd: string, args: string[], opts: { user?: string } = {}): Promise<string> {
  const [c, a] = opts.user && process.getuid?.() === 0 ? ['runuser', ['-u', opts.user, '--', cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    execFile(c, a, { cwd: '/', encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || stdout || err.message}`));
      else resolve(stdout);
    });
  });
}

function run(cmd: string, args: string[], opts: { cwd?: string; user?: string } = {}): string {
  const [c, a] = opts.user && process.getuid?.() === 0 ? ['runuser', ['-u', opts.user, '--', cmd, ...args]] : [cmd, args];
  const r = spawnSync(c, a, { cwd: opts.cwd ?? '/', encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout || r.error}`);
  return r.stdout;
}

export interface Pki {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** PKCS#12 keystore of the server key and certificate (Kafka). */
  keystore: string;
  truststore: string;
  storePassword: string;
}

/** A CA and one server certificate valid for 127.0.0.1 and localhost. */
export function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  const p = (f: string) => join(dir, f);
  const storePassword = randomBytes(12).toString('hex');
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=shopstream test CA']);
  run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=127.0.0.1']);
  writeFileSync(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n');
  run('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.pem'), '-days', '2', '-extfile', p('ext.cnf')]);
  run('openssl', ['pkcs12', '-export', '-in', p('server.pem'), '-inkey', p('server.key'), '-certfile', p('ca.pem'), '-name', 'broker', '-out', p('broker.p12'), '-passout', `pass:${storePassword}`]);
  run('keytool', ['-importcert', '-noprompt', '-alias', 'ca', '-file', p('ca.pem'), '-keystore', p('trust.p12'), '-storetype', 'PKCS12', '-storepass', storePassword]);
  return { dir, caFile: p('ca.pem'), certFile: p('server.pem'), keyFile: p('server.key'), keystore: p('broker.p12'), truststore: p('trust.p12'), storePassword };
}

export interface Stoppable { port: number; stop(): Promise<void> }

/**
 * Postgres 15 in `dir` on a port of the range: wal_level=logical, ssl=on
 * with the PKI's certificate; TCP connections only as `hostssl` with
 * scram-sha-256 (a plaintext TCP connection is refused); the superuser
 * `postgres` only over the Unix socket in `dir`, trust.
 */
export async function startSecurePostgres(pki: Pki, dir: string): Promise<Stoppable & { socketDir: string; adminUrl(db: string): string }> {
  const port = await freePortInRange();
  const data = join(dir, 'data');
  mkdirSync(dir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const user = asRoot ? 'postgres' : undefined;
  if (asRoot) chownSync(dir, uid('postgres'), gid('postgres'));
  await runAsync(`${PG_BIN}/initdb`, ['-D', data, '-U', 'postgres', '--auth-local=trust', '--auth-host=reject', '--encoding=UTF8', '--locale=C.UTF-8'], { user });
  for (const [f, src] of [['server.crt', pki.certFile], ['server.key', pki.keyFile], ['ca.crt', pki.caFile]] as const) {
    writeFileSync(join(data, f), readFileSync(src));
    chmodSync(join(data, f), 0o600);
    if (asRoot) chownSync(join(data, f), uid('postgres'), gid('postgres'));
  }
  writeFileSync(join(data, 'postgresql.auto.conf'), [
    `port = ${port}`, "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${dir}'`, 'wal_level = logical',
    'max_replication_slots = 8', 'max_wal_senders = 8', 'ssl = on', "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'",
    "password_encryption = 'scram-sha-256'", 'fsync = off', 'synchronous_commit = off', 'shared_buffers = 32MB', 'max_connections = 60',
  ].join('\n') + '\n');
  writeFileSync(join(data, 'pg_hba.conf'), 'local all postgres trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n');
  if (asRoot) for (const f of ['postgresql.auto.conf', 'pg_hba.conf']) chownSync(join(data, f), uid('postgres'), gid('postgres'));
  await runAsync(`${PG_BIN}/pg_ctl`, ['-D', data, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', 'start'], { user });
  const stop = async () => {
    await runAsync(`${PG_BIN}/pg_ctl`, ['-D', data, '-m', 'immediate', '-w', '-t', '30', 'stop'], { user }).catch(() => { /* already gone */ });
  };
  return { port, socketDir: dir, stop, adminUrl: (db) => `postgres://postgres@/${db}?host=${encodeURIComponent(dir)}&port=${port}` };
}

function uid(name: string): number { return Number(run('id', ['-u', name]).trim()); }
function gid(name: string): number { return Number(run('id', ['-g', name]).trim()); }

/**
 * redis-server with a TLS port only (no plaintext port), client
 * certificates optional, and an ACL file: the default user off, plus the
 * given users each limited to its key patterns and command set.
 */
export async function startSecureRedis(pki: Pki, dir: string, users: Array<{ name: string; password: string; rules: string }>): Promise<Stoppable & { adminPassword: string }> {
  const port = await freePortInRange();
  mkdirSync(dir, { recursive: true });
  const adminPassword = randomBytes(16).toString('hex');
  writeFileSync(join(dir, 'users.acl'), [
    'user default off',
    `user admin on >${adminPassword} ~* &* +@all`,
    ...users.map((u) => `user ${u.name} on >${u.password} ${u.rules}`),
  ].join('\n') + '\n');
  writeFileSync(join(dir, 'redis.conf'), [
    'port 0', `tls-port ${port}`, 'bind 127.0.0.1', `tls-cert-file ${pki.certFile}`, `tls-key-file ${pki.keyFile}`, `tls-ca-cert-file ${pki.caFile}`,
    'tls-auth-clients optional', `aclfile ${join(dir, 'users.acl')}`, `dir ${dir}`, 'save ""', 'appendonly no', `logfile ${join(dir, 'redis.log')}`,
  ].join('\n') + '\n');
  const child = spawn('redis-server', [join(dir, 'redis.conf')], { stdio: 'ignore' });
  await waitPort(port, child, () => readTail(join(dir, 'redis.log')));
  return { port, adminPassword, stop: () => stopChild(child) };
}

export interface SecureKafka extends Stoppable {
  brokers: string[];
  dir: string;
}

/**
 * A KRaft broker+controller whose client and inter-broker listener is
 * SASL_SSL (SCRAM-SHA-256 and -512) on the PKI's keystore; the controller
 * listener stays on loopback, as the stack's. SCRAM users are written into
 * the metadata log by kafka-storage format --add-scram before the first start.
 */
export async function startSecureKafka(pki: Pki, dir: string, users: Array<{ name: string; password: string; mechanism: 'SCRAM-SHA-256' | 'SCRAM-SHA-512' }>): Promise<SecureKafka> {
  const cp = kafkaClasspath();
  const [port, controller] = [await freePortInRange(), await freePortInRange()];
  mkdirSync(dir, { recursive: true });
  const adminPassword = randomBytes(16).toString('hex');
  const jaas = (u: string, pw: string) => `org.apache.kafka.common.security.scram.ScramLoginModule required username="${u}" password="${pw}";`;
  const props = [
    'process.roles=broker,controller', 'node.id=1', `controller.quorum.voters=1@127.0.0.1:${controller}`,
    `listeners=SASL_SSL://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller}`, `advertised.listeners=SASL_SSL://127.0.0.1:${port}`,
    'controller.listener.names=CONTROLLER', 'inter.broker.listener.name=SASL_SSL', 'listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL',
    'sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512', 'sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512',
    `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=${jaas('broker-admin', adminPassword)}`,
    `listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=${jaas('broker-admin', adminPassword)}`,
    'ssl.keystore.type=PKCS12', `ssl.keystore.location=${pki.keystore}`, `ssl.keystore.password=${pki.storePassword}`, `ssl.key.password=${pki.storePassword}`,
    'ssl.truststore.type=PKCS12', `ssl.truststore.location=${pki.truststore}`, `ssl.truststore.password=${pki.storePassword}`,
    `log.dirs=${dir}/data`, 'num.partitions=1', 'default.replication.factor=1', 'auto.create.topics.enable=false',
    'offsets.topic.replication.factor=1', 'offsets.topic.num.partitions=4', 'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1', 'transaction.state.log.num.partitions=4', 'group.initial.rebalance.delay.ms=0',
    'num.network.threads=2', 'num.io.threads=2',
  ].join('\n') + '\n';
  writeFileSync(join(dir, 'server.properties'), props);
  const java = kafkaJavaArgs(dir, cp);
  const clusterId = randomBytes(16).toString('base64url').slice(0, 22).replace(/^-/, 'A');
  const scram = [{ name: 'broker-admin', password: adminPassword, mechanism: 'SCRAM-SHA-512' as const }, ...users]
    .flatMap((u) => ['--add-scram', `${u.mechanism}=[name=${u.name},password=${u.password}]`]);
  await runAsync('java', [...java, 'kafka.tools.StorageTool', 'format', '--ignore-formatted', '-t', clusterId, '-c', join(dir, 'server.properties'), ...scram]);
  const child = spawn('java', [...java, 'kafka.Kafka', join(dir, 'server.properties')], { stdio: 'ignore' });
  const brokers = [`127.0.0.1:${port}`];
  const stop = async () => { await stopChild(child); rmSync(join(dir, 'data'), { recursive: true, force: true }); };
  const u = users[0]!;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`secure kafka exited during start-up:\n${readTail(join(dir, 'server.log'))}`);
    if (Date.now() > deadline) { await stop(); throw new Error(`secure kafka did not answer in time:\n${readTail(join(dir, 'server.log'))}`); }
    const admin = new kafkajs.Kafka({
      clientId: 'probe', brokers, logLevel: kafkajs.logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1000, requestTimeout: 2000,
      ssl: { ca: readFileSync(pki.caFile) }, sasl: { mechanism: u.mechanism.toLowerCase() as 'scram-sha-512', username: u.name, password: u.password },
    }).admin();
    try {
      await admin.connect();
      if ((await admin.describeCluster()).brokers.length > 0) return { port, brokers, dir, stop };
    } catch {
      // not yet
    } finally {
      await admin.disconnect().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function waitPort(port: number, child: ChildProcess, tail: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server on ${port} exited during start-up:\n${tail()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`server on ${port} did not listen in time:\n${tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function readTail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').slice(-3000) : '';
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

export { REPO };
