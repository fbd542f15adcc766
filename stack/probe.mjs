// One-shot readiness probes used by scripts/stack.sh (it loops and watches
// the process while it waits; this file only answers "ready now or not").
//
//   node stack/probe.mjs kafka 127.0.0.1:59092
//   node stack/probe.mjs http http://127.0.0.1:58081/subjects
//
// Exit 0 when the service answered a real request, 1 otherwise (the reason
// on stderr, one line).
const [kind, target] = process.argv.slice(2);

async function probeKafka(broker) {
  const { Kafka, logLevel } = (await import('kafkajs')).default ?? (await import('kafkajs'));
  const kafka = new Kafka({
    clientId: 'stack-probe',
    brokers: [broker],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1500,
    requestTimeout: 5000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    if (cluster.brokers.length === 0) throw new Error('no brokers in metadata');
    // A metadata request for all topics goes through the broker's metadata
    // cache, which is only filled once the broker has caught up with the
    // controller: a stronger signal than an open socket.
    await admin.listTopics();
    return `cluster ${cluster.clusterId}, controller ${cluster.controller}, brokers ${cluster.brokers.map((b) => `${b.nodeId}@${b.host}:${b.port}`).join(',')}`;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

async function probeHttp(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status}`);
  return `GET ${url} -> 200`;
}

try {
  let info;
  if (kind === 'kafka') info = await probeKafka(target);
  else if (kind === 'http') info = await probeHttp(target);
  else throw new Error(`usage: probe.mjs kafka HOST:PORT | http URL`);
  process.stdout.write(`${info}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`${err?.message ?? err}\n`);
  process.exit(1);
}
