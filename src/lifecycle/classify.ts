import {
  AuthFailedError, CdcError, KafkaRefusedError, UnavailableError, UnexpectedError, errorMessage, type UnavailableCode,
} from '../errors.ts';
import { describeEndpoint, endpointHint, type Endpoint, type ServiceKind } from './endpoints.ts';

/**
 * Turns a raw error from a client library (node's net, pg, kafkajs, ioredis,
 * fetch, the Confluent registry client) into one of the project's named
 * errors, deciding whether it is worth retrying. The rule (docs/operations.md,
 * "Error policy"): a server that is down, restarting, moving a leader or
 * still creating a topic is retriable; a request the server refuses on its
 * merits (message too large, not authorized, bad config, bad SQL) is fatal,
 * and so is anything this module does not recognise.
 */
export interface Classified {
  error: CdcError;
  retriable: boolean;
  /** The server the error is about, when it could be told. */
  endpoint?: Endpoint;
}

export interface ClassifyOptions {
  /** The servers this process talks to (src/lifecycle/endpoints.ts). */
  endpoints?: Endpoint[];
  /** The server the failed call was made against, when the caller knows it. */
  via?: Endpoint;
}

const RETRIABLE_SYSCALL = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN',
  'EAI_AGAIN', 'ECONNABORTED', 'ESOCKETTIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED',
]);

/**
 * Postgres SQLSTATEs that mean "the server, not the statement": restarting
 * (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
 * i.e. starting up or shutting down), connection exceptions (class 08), too
 * many connections (53300), and the transaction conflicts a retry resolves
 * (40001 serialization failure, 40P01 deadlock).
 */
const PG_RETRIABLE = /^(57P0[123]|08...|53300|53400|40001|40P01|55P03|58030)$/;
const PG_MESSAGES = /Connection terminated|connection timeout|timeout expired|the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)|terminating connection due to administrator command|Client has encountered a connection error/i;

/**
 * Kafka protocol errors that pass when the cluster settles: leaders moving,
 * metadata not yet propagated (UNKNOWN_TOPIC_OR_PARTITION, "This server does
 * not host this topic-partition", right after a topic is created), the
 * group coordinator loading, a broker restarting.
 */
const KAFKA_RETRIABLE_TYPES = new Set([
  'UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE', 'NOT_LEADER_FOR_PARTITION', 'NOT_LEADER_OR_FOLLOWER',
  'REQUEST_TIMED_OUT', 'NETWORK_EXCEPTION', 'COORDINATOR_LOAD_IN_PROGRESS', 'GROUP_COORDINATOR_NOT_AVAILABLE',
  'COORDINATOR_NOT_AVAILABLE', 'NOT_COORDINATOR', 'NOT_COORDINATOR_FOR_GROUP', 'NOT_ENOUGH_REPLICAS',
  'NOT_ENOUGH_REPLICAS_AFTER_APPEND', 'REBALANCE_IN_PROGRESS', 'KAFKA_STORAGE_ERROR', 'FENCED_LEADER_EPOCH',
  'UNKNOWN_LEADER_EPOCH', 'OFFSET_NOT_AVAILABLE', 'PREFERRED_LEADER_NOT_AVAILABLE', 'ELIGIBLE_LEADERS_NOT_AVAILABLE',
  'BROKER_NOT_AVAILABLE', 'REPLICA_NOT_AVAILABLE', 'THROTTLING_QUOTA_EXCEEDED', 'CONCURRENT_TRANSACTIONS',
  'UNSTABLE_OFFSET_COMMIT', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID',
  // Only CreateTopics answers this: a racing creator won; the retry finds the topic.
  'TOPIC_ALREADY_EXISTS',
]);
/** Refusals no retry can fix. */
const KAFKA_FATAL_TYPES = new Set([
  'MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_TOPIC_EXCEPTION', 'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'INVALID_CONFIG', 'POLICY_VIOLATION', 'INVALID_REPLICATION_FACTOR', 'INVALID_PARTITIONS', 'INVALID_REQUIRED_ACKS',
  'UNSUPPORTED_VERSION', 'INVALID_RECORD', 'CORRUPT_MESSAGE', 'SASL_AUTHENTICATION_FAILED', 'UNSUPPORTED_SASL_MECHANISM',
  'INVALID_GROUP_ID', 'INCONSISTENT_GROUP_PROTOCOL', 'INVALID_SESSION_TIMEOUT', 'UNSUPPORTED_COMPRESSION_TYPE',
]);
/** kafkajs client-side conditions that pass (no broker reachable yet, metadata not loaded, a lock wait timed out). */
const KAFKA_RETRIABLE_NAMES = new Set([
  'KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError', 'KafkaJSNoBrokerAvailableError',
  'KafkaJSBrokerNotFound', 'KafkaJSMetadataNotLoaded', 'KafkaJSTopicMetadataNotLoaded', 'KafkaJSStaleTopicMetadataAssignment',
  'KafkaJSGroupCoordinatorNotFound', 'KafkaJSTimeout', 'KafkaJSLockTimeout',
]);
const KAFKA_FATAL_NAMES = new Set([
  'KafkaJSSASLAuthenticationError', 'KafkaJSServerDoesNotSupportApiKey', 'KafkaJSNotImplemented',
  'KafkaJSInvariantViolation', 'KafkaJSUnsupportedMagicByteInMessageSet',
]);
const KAFKA_MESSAGES = /does not host this topic-partition|no leader for this topic-partition|leader is not available|Broker not connected|Connection timeout|Closed connection|Request .* timed out|There is no leader/i;
const KAFKA_TOO_LARGE = /larger than the max message size|message batch larger than the configured segment size|MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE/i;

const REDIS_MESSAGES = /Connection is closed|Stream isn't writeable|max retries per request|^LOADING |^MASTERDOWN|^TRYAGAIN|^CLUSTERDOWN|Command timed out/i;

type Node = Error & { code?: unknown; errno?: unknown; address?: unknown; port?: unknown; type?: unknown; retriable?: unknown; severity?: unknown; status?: unknown; name: string };

/** The error and everything it wraps (cause chains, AggregateError lists, kafkajs' aggregated errors). */
function chain(err: unknown): Node[] {
  const out: Node[] = [];
  const seen = new Set<unknown>();
  const walk = (e: unknown, depth: number) => {
    if (!e || typeof e !== 'object' || seen.has(e) || depth > 12) return;
    seen.add(e);
    out.push(e as Node);
    const any = e as { cause?: unknown; errors?: unknown; originalError?: unknown };
    walk(any.cause, depth + 1);
    walk(any.originalError, depth + 1);
    if (Array.isArray(any.errors)) for (const x of any.errors) walk(x, depth + 1);
  };
  walk(err, 0);
  return out;
}

const isKafkaNode = (n: Node) => typeof n.name === 'string' && n.name.startsWith('KafkaJS');
const isPgNode = (n: Node) => typeof n.code === 'string' && /^[0-9A-Z]{5}$/.test(n.code) && typeof n.severity === 'string';
const isRedisNode = (n: Node) => ['ReplyError', 'MaxRetriesPerRequestError', 'ParserError', 'AbortError'].includes(n.name) && /redis|ioredis/i.test(n.stack ?? '')
  || REDIS_MESSAGES.test(n.message ?? '');
const isRegistryNode = (n: Node) => /ConfluentSchemaRegistry|ResponseError/.test(n.name ?? '') || (typeof n.status === 'number' && !isPgNode(n));

function kindOf(nodes: Node[], o: ClassifyOptions): { kind?: ServiceKind; endpoint?: Endpoint } {
  const endpoints = [...(o.via ? [o.via] : []), ...(o.endpoints ?? [])];
  // A socket error names the address it failed on: the most precise hint.
  for (const n of nodes) {
    if (typeof n.port !== 'number') continue;
    const host = typeof n.address === 'string' ? n.address : undefined;
    const matches = endpoints.filter((e) => e.hosts.some((h) => h.port === n.port && (!host || h.host === host || isLoopback(h.host) && isLoopback(host))));
    const viaMatch = matches.find((e) => e === o.via);
    const kafkaHint = nodes.some(isKafkaNode) ? matches.find((e) => e.kind === 'kafka') : undefined;
    const m = viaMatch ?? kafkaHint ?? matches[0];
    if (m) return { kind: m.kind, endpoint: m };
  }
  let kind: ServiceKind | undefined;
  if (nodes.some(isKafkaNode)) kind = 'kafka';
  else if (nodes.some(isPgNode)) kind = 'postgres';
  else if (nodes.some(isRegistryNode)) kind = 'registry';
  else if (nodes.some(isRedisNode)) kind = 'redis';
  else if (nodes[0] instanceof UnavailableError) kind = kindOfCode(nodes[0].code);
  kind ??= o.via?.kind;
  const endpoint = o.via?.kind === kind ? o.via : endpoints.find((e) => e.kind === kind);
  return { kind, endpoint };
}

function isLoopback(h: string): boolean {
  return h === '127.0.0.1' || h === 'localhost' || h === '::1' || h === '[::1]' || h === '::ffff:127.0.0.1';
}

function kindOfCode(code: UnavailableCode): ServiceKind | undefined {
  switch (code) {
    case 'KAFKA_UNAVAILABLE': return 'kafka';
    case 'SCHEMA_REGISTRY': return 'registry';
    case 'REDIS_UNAVAILABLE': return 'redis';
    case 'SINK_UNAVAILABLE': case 'SOURCE_UNAVAILABLE': return 'postgres';
    default: return undefined;
  }
}

function codeFor(kind: ServiceKind | undefined, endpoint: Endpoint | undefined): UnavailableCode {
  switch (kind) {
    case 'kafka': return 'KAFKA_UNAVAILABLE';
    case 'registry': return 'SCHEMA_REGISTRY';
    case 'redis': return 'REDIS_UNAVAILABLE';
    case 'postgres': return endpoint?.setting === 'SOURCE_DATABASE_URL' ? 'SOURCE_UNAVAILABLE' : 'SINK_UNAVAILABLE';
    default: return 'STACK_UNAVAILABLE';
  }
}

/** The innermost message that says something (AggregateError's own message is often empty). */
export function rootMessage(err: unknown): string {
  const nodes = chain(err);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const m = nodes[i]!.message;
    if (typeof m === 'string' && m.trim() !== '' && nodes[i]!.name !== 'AggregateError') return m;
  }
  return errorMessage(err) || String((nodes[0] as { code?: unknown })?.code ?? err);
}

function verdict(nodes: Node[]): 'retriable' | 'fatal' | 'unknown' {
  for (const n of nodes) {
    if (typeof n.type === 'string' && KAFKA_FATAL_TYPES.has(n.type)) return 'fatal';
    if (KAFKA_FATAL_NAMES.has(n.name)) return 'fatal';
    if (isKafkaNode(n) && KAFKA_TOO_LARGE.test(n.message ?? '')) return 'fatal';
    if (isPgNode(n) && !PG_RETRIABLE.test(n.code as string)) return 'fatal';
    if (typeof n.status === 'number' && !isPgNode(n) && n.status >= 400 && n.status < 500 && n.status !== 408 && n.status !== 429) return 'fatal';
  }
  for (const n of nodes) {
    if (typeof n.code === 'string' && RETRIABLE_SYSCALL.has(n.code)) return 'retriable';
    if (isPgNode(n) && PG_RETRIABLE.test(n.code as string)) return 'retriable';
    if (typeof n.type === 'string' && KAFKA_RETRIABLE_TYPES.has(n.type)) return 'retriable';
    if (KAFKA_RETRIABLE_NAMES.has(n.name)) return 'retriable';
    if (isKafkaNode(n) && KAFKA_MESSAGES.test(n.message ?? '')) return 'retriable';
    if (PG_MESSAGES.test(n.message ?? '')) return 'retriable';
    if (REDIS_MESSAGES.test(n.message ?? '')) return 'retriable';
    if (typeof n.status === 'number' && (n.status >= 500 || n.status === 408 || n.status === 429)) return 'retriable';
    if (n instanceof CdcError && n.retriable) return 'retriable';
  }
  // kafkajs marks what it considers transient; after its own retries it wraps
  // the last error (KafkaJSNumberOfRetriesExceeded), whose cause decides.
  const k = nodes.filter(isKafkaNode);
  if (k.length > 0 && k[k.length - 1]!.retriable === true) return 'retriable';
  return 'unknown';
}

const CONNECTION_NAMES = new Set(['KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSNoBrokerAvailableError', 'KafkaJSBrokerNotFound']);

/**
 * One line for a user: which server, where, which setting, what happened,
 * what to do. "cannot reach" (with the hint) only when the connection
 * itself failed; a server that answers but is still settling (a topic's
 * leader not yet serving it, Postgres starting up) "is not ready".
 */
export function unavailableMessage(endpoint: Endpoint | undefined, err: unknown): string {
  const reason = rootMessage(err);
  if (!endpoint) return reason;
  const connection = chain(err).some((n) => (typeof n.code === 'string' && RETRIABLE_SYSCALL.has(n.code)) || CONNECTION_NAMES.has(n.name));
  if (!connection) return `${describeEndpoint(endpoint)} is not ready: ${reason}`;
  return `cannot reach ${describeEndpoint(endpoint)}: ${reason}; ${endpointHint(endpoint)}`;
}

/**
 * TLS verification failures (node's tls error codes): the server's
 * certificate does not chain to the CA we were given, or names another
 * host. Retrying cannot fix either.
 */
const TLS_CODES = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_.*|HOSTNAME_MISMATCH)$/;

/** The settings a user fixes for a refused credential or certificate, per server kind. */
const AUTH_SETTINGS: Record<ServiceKind, { credentials: (e?: Endpoint) => string; ca: (e?: Endpoint) => string }> = {
  kafka: { credentials: () => 'KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD (and KAFKA_SASL_MECHANISM)', ca: () => 'KAFKA_SSL_CA_FILE (KAFKA_SSL_CHECK_HOSTNAME)' },
  postgres: { credentials: (e) => `the user and password in ${e?.setting ?? 'the database URL'}`, ca: (e) => `sslrootcert / sslmode in ${e?.setting ?? 'the database URL'}` },
  redis: { credentials: () => 'REDIS_USERNAME / REDIS_PASSWORD', ca: () => 'REDIS_TLS_CA_FILE' },
  registry: { credentials: () => 'SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SCHEMA_REGISTRY_BEARER_TOKEN', ca: () => 'SCHEMA_REGISTRY_CA_FILE' },
};

/**
 * A refused credential or certificate, told apart from an outage: kafkajs'
 * SASL failure, Postgres 28P01/28000 (password / no pg_hba entry), Redis
 * WRONGPASS/NOAUTH/NOPERM, a registry 401/403, and a TLS verification error
 * at any of them. One line naming the server and the setting to fix.
 */
function authFailure(nodes: Node[], kind: ServiceKind | undefined, endpoint: Endpoint | undefined, err: unknown): AuthFailedError | undefined {
  let what: 'credentials' | 'ca' | undefined;
  let k = kind;
  for (const n of nodes) {
    if (typeof n.code === 'string' && TLS_CODES.test(n.code)) { what = 'ca'; break; }
    if (n.name === 'KafkaJSSASLAuthenticationError' || n.type === 'SASL_AUTHENTICATION_FAILED' || n.type === 'UNSUPPORTED_SASL_MECHANISM') { what = 'credentials'; k = 'kafka'; break; }
    if (isPgNode(n) && (n.code === '28P01' || n.code === '28000')) { what = 'credentials'; k = 'postgres'; break; }
    if (/^(WRONGPASS|NOAUTH|NOPERM)\b/.test(n.message ?? '')) { what = 'credentials'; k = 'redis'; break; }
    if (isRegistryNode(n) && (n.status === 401 || n.status === 403)) { what = 'credentials'; k = 'registry'; break; }
  }
  if (!what) return undefined;
  const ep = endpoint?.kind === k ? endpoint : undefined;
  const where = ep ? describeEndpoint(ep) : k ? { kafka: 'Kafka', postgres: 'Postgres', redis: 'Redis', registry: 'the schema registry' }[k] : 'a server';
  const fix = k ? AUTH_SETTINGS[k][what](ep) : 'the TLS and credential settings';
  const verb = what === 'ca' ? 'TLS certificate check failed for' : 'authentication refused by';
  return new AuthFailedError(`${verb} ${where}: ${rootMessage(err)}; check ${fix}`, { cause: err });
}

export function classify(err: unknown, o: ClassifyOptions = {}): Classified {
  const nodes = chain(err);
  const { kind, endpoint } = kindOf(nodes, o);
  // Our own errors already carry the decision; only a bare wrapper around a
  // raw error (UnavailableError with no endpoint in its message) is renamed.
  if (err instanceof AuthFailedError) return { error: err, retriable: false, endpoint };
  const auth = authFailure(nodes, kind, endpoint, err);
  if (auth) return { error: auth, retriable: false, endpoint };
  if (err instanceof CdcError) return { error: err, retriable: err.retriable, endpoint };
  const v = verdict(nodes);
  if (v === 'retriable') {
    return { error: new UnavailableError(codeFor(kind, endpoint), unavailableMessage(endpoint, err), { cause: err }), retriable: true, endpoint };
  }
  const where = endpoint ? `${describeEndpoint(endpoint)}: ` : '';
  if (v === 'fatal' && kind === 'kafka') return { error: new KafkaRefusedError(`${where}${rootMessage(err)}`, { cause: err }), retriable: false, endpoint };
  return { error: new UnexpectedError(`${where}${rootMessage(err)}`, { cause: err }), retriable: false, endpoint };
}
