import type { ConnectionOptions } from 'node:tls';
import type { KafkaConfig, SASLOptions } from 'kafkajs';
import { ConfigError } from '../errors.ts';
import { bool, brokerList, fileContents, oneOf, optionalStr, str, withSecret, type Env } from './env.ts';

/**
 * How every Kafka client of the project connects: the capture's producer,
 * every consumer group, replay and rewind, topic creation, the dead-letter
 * writer, `status` and the benchmarks all build their kafkajs client from
 * `kafkaClientConfig(conn, ...)`, so one set of settings (docs/security.md)
 * secures them all. The names follow Kafka's own client settings
 * (security.protocol, sasl.mechanism, ssl.truststore...).
 */
export const KAFKA_SECURITY_PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'] as const;
export type KafkaSecurityProtocol = (typeof KAFKA_SECURITY_PROTOCOLS)[number];
export const KAFKA_SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

export interface KafkaConnection {
  brokers: string[];
  protocol: KafkaSecurityProtocol;
  /** TLS options for node's tls.connect; undefined for PLAINTEXT and SASL_PLAINTEXT. */
  ssl?: ConnectionOptions;
  sasl?: { mechanism: KafkaSaslMechanism; username: string; password: string };
}

const TLS_SETTINGS = ['KAFKA_SSL_CA_FILE', 'KAFKA_SSL_CERT_FILE', 'KAFKA_SSL_KEY_FILE'] as const;
const SASL_SETTINGS = ['KAFKA_SASL_MECHANISM', 'KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD'] as const;

function isSet(env: Env, name: string): boolean {
  return optionalStr(env, name) !== undefined || optionalStr(env, `${name}_FILE`) !== undefined;
}

export function loadKafkaConnection(env: Env, defaultBrokers: string): KafkaConnection {
  const brokers = brokerList(env, 'KAFKA_BROKERS', defaultBrokers);
  const protocol = oneOf(env, 'KAFKA_SECURITY_PROTOCOL', KAFKA_SECURITY_PROTOCOLS, 'PLAINTEXT');
  const tls = protocol === 'SSL' || protocol === 'SASL_SSL';
  const sasl = protocol.startsWith('SASL_');
  // A TLS or SASL setting under a protocol that ignores it would connect in the clear without a word.
  for (const s of TLS_SETTINGS) if (!tls && isSet(env, s)) throw new ConfigError(`${s} is set but KAFKA_SECURITY_PROTOCOL is ${protocol}; use SSL or SASL_SSL`);
  for (const s of SASL_SETTINGS) if (!sasl && isSet(env, s)) throw new ConfigError(`${s} is set but KAFKA_SECURITY_PROTOCOL is ${protocol}; use SASL_SSL or SASL_PLAINTEXT`);
  const conn: KafkaConnection = { brokers, protocol };
  if (tls) {
    const ca = fileContents(env, 'KAFKA_SSL_CA_FILE');
    const cert = fileContents(env, 'KAFKA_SSL_CERT_FILE');
    const key = fileContents(env, 'KAFKA_SSL_KEY_FILE');
    if (!cert !== !key) throw new ConfigError('KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together: set both or neither');
    const ssl: ConnectionOptions = { rejectUnauthorized: true };
    if (ca) ssl.ca = ca;
    if (cert && key) Object.assign(ssl, { cert, key });
    const passphrase = optionalStr(env, 'KAFKA_SSL_KEY_PASSWORD');
    if (passphrase) withSecret(ssl, 'passphrase', passphrase);
    // Kafka's ssl.endpoint.identification.algorithm=""; the chain is still verified.
    if (!bool(env, 'KAFKA_SSL_CHECK_HOSTNAME', true)) ssl.checkServerIdentity = () => undefined;
    conn.ssl = ssl;
  }
  if (sasl) {
    const mechanism = oneOf(env, 'KAFKA_SASL_MECHANISM', KAFKA_SASL_MECHANISMS, 'SCRAM-SHA-512');
    conn.sasl = withSecret({ mechanism, username: str(env, 'KAFKA_SASL_USERNAME') }, 'password', str(env, 'KAFKA_SASL_PASSWORD'));
  }
  return conn;
}

/** A kafkajs client config: the connection's brokers, TLS and SASL plus the caller's own options (client id, logging, timeouts). */
export function kafkaClientConfig(conn: KafkaConnection, extra: Omit<KafkaConfig, 'brokers' | 'ssl' | 'sasl'> = {}): KafkaConfig {
  const cfg: KafkaConfig = { ...extra, brokers: conn.brokers };
  // Plain copies: kafkajs Object.assign()s the TLS options, which would drop the hidden passphrase.
  if (conn.ssl) cfg.ssl = { ...conn.ssl, ...(conn.ssl.passphrase ? { passphrase: conn.ssl.passphrase } : {}) };
  if (conn.sasl) {
    const { username, password } = conn.sasl;
    const mechanism = conn.sasl.mechanism.toLowerCase() as 'plain' | 'scram-sha-256' | 'scram-sha-512';
    cfg.sasl = { mechanism, username, password } as SASLOptions;
  }
  return cfg;
}

/** What `status` and start-up lines may show: never the password, nor key material. */
export function describeKafkaSecurity(conn: KafkaConnection): string {
  const parts: string[] = [conn.protocol];
  if (conn.sasl) parts.push(`${conn.sasl.mechanism} as ${conn.sasl.username}`);
  if (conn.ssl) parts.push(conn.ssl.ca ? 'CA from KAFKA_SSL_CA_FILE' : 'system CAs');
  return parts.join(', ');
}
