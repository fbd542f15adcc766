import avro from 'avsc';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { registryAgent, registryAuthorization, type RegistryConnection } from '../config/registry.ts';
import { AuthFailedError, DecodeError, UnavailableError, errorMessage } from '../errors.ts';

/**
 * Avro decoding of Confluent-wire messages with exact numbers:
 * - `long` decodes to bigint (LSNs and ids can pass 2^53);
 * - `bytes` with logicalType `decimal` decodes to an exact decimal string,
 *   its scale taken from the Avro `scale` attribute or, as Debezium/Kafka
 *   Connect write it, from `connect.parameters.scale`.
 * Debezium's VariableScaleDecimal is a plain record {scale, value}; it is
 * turned into a string during validation (src/consumer/envelope.ts).
 */

export const bigintLong = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigInt64LE(),
  toBuffer: (n: bigint | number) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(BigInt(n));
    return buf;
  },
  fromJSON: (n: number | string) => BigInt(n),
  toJSON: (n: bigint) => Number(n),
  isValid: (n: unknown) => typeof n === 'bigint' || (typeof n === 'number' && Number.isSafeInteger(n)),
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

/** Unscaled big-endian two's complement bytes → decimal string with `scale` fraction digits. */
export function decimalFromBytes(buf: Buffer, scale: number): string {
  let n = 0n;
  for (const b of buf) n = (n << 8n) | BigInt(b);
  if (buf.length > 0 && (buf[0]! & 0x80) !== 0) n -= 1n << BigInt(buf.length * 8);
  return unscaledToString(n, scale);
}

export function unscaledToString(n: bigint, scale: number): string {
  const neg = n < 0n;
  const digits = (neg ? -n : n).toString();
  if (scale <= 0) return (neg ? '-' : '') + digits + '0'.repeat(-scale);
  const padded = digits.padStart(scale + 1, '0');
  return `${neg ? '-' : ''}${padded.slice(0, -scale)}.${padded.slice(-scale)}`;
}

/** Decimal string → unscaled bytes at `scale` (for fixtures and producers); refuses to round. */
export function decimalToBytes(value: string, scale: number): Buffer {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(value);
  if (!m) throw new TypeError(`not a decimal: ${value}`);
  const [, sign, int, frac = ''] = m;
  if (frac.length > scale && /[1-9]/.test(frac.slice(scale))) throw new RangeError(`${value} has more than ${scale} decimals`);
  let n = BigInt(int! + frac.slice(0, scale).padEnd(scale, '0'));
  if (sign) n = -n;
  const bytes: number[] = [];
  for (;;) {
    bytes.unshift(Number(n & 0xffn));
    const more = n >> 8n;
    const byte = bytes[0]!;
    if ((more === 0n && (byte & 0x80) === 0) || (more === -1n && (byte & 0x80) !== 0)) break;
    n = more;
  }
  return Buffer.from(bytes);
}

export const DECIMAL_STRING = /^-?\d+(\.\d+)?$/;

function scaleOf(schema: Record<string, unknown>): number {
  const direct = schema.scale;
  const params = schema['connect.parameters'] as Record<string, unknown> | undefined;
  const raw = direct ?? params?.scale ?? 0;
  const scale = Number(raw);
  if (!Number.isInteger(scale)) throw new Error(`decimal with invalid scale ${String(raw)}`);
  return scale;
}

export class DecimalType extends avro.types.LogicalType {
  private readonly scale: number;
  constructor(schema: avro.Schema, opts?: avro.ForSchemaOptions) {
    super(schema, opts);
    this.scale = scaleOf(schema as unknown as Record<string, unknown>);
  }
  override _fromValue(val: Buffer): string {
    return decimalFromBytes(val, this.scale);
  }
  override _toValue(val: unknown): Buffer | unknown {
    return typeof val === 'string' && DECIMAL_STRING.test(val) ? decimalToBytes(val, this.scale) : val;
  }
  override _resolve(type: avro.Type): ((x: unknown) => unknown) | undefined {
    if (avro.Type.isType(type, 'logical:decimal') && (type as DecimalType).scale === this.scale) return (x) => x;
    return undefined;
  }
}

/** avsc options shared by decoding and by the test fixtures' encoding. */
export function avroOptions(): avro.ForSchemaOptions {
  return {
    logicalTypes: { decimal: DecimalType },
    typeHook: (schema: unknown) => {
      if (schema === 'long' || (typeof schema === 'object' && !Array.isArray(schema) && (schema as { type?: unknown }).type === 'long' && !(schema as { logicalType?: unknown }).logicalType)) {
        return bigintLong;
      }
      return undefined;
    },
  } as unknown as avro.ForSchemaOptions;
}

/** The Confluent client over the connection's auth and CA (a bare URL: an open registry). */
export function createRegistry(conn: RegistryConnection | string): SchemaRegistry {
  const c: RegistryConnection = typeof conn === 'string' ? { url: conn } : conn;
  const authorization = registryAuthorization(c);
  // mappersmith's basic auth would do for user:password, but not for a bearer token; one header serves both.
  const middlewares = authorization ? [() => ({ request: (req: any) => req.enhance({ headers: { authorization } }) })] : [];
  const agent = registryAgent(c);
  return new SchemaRegistry({ host: c.url, retry: { retries: 2 }, middlewares, ...(agent ? { agent } : {}) } as never, { [SchemaType.AVRO]: avroOptions() });
}

function httpStatus(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : undefined;
}

/**
 * Decodes one Confluent-wire Avro message. Bytes that can never decode
 * (wrong magic byte, unknown schema id, bad Avro) throw DecodeError, which
 * sends the message to the dead-letter topic; a registry that cannot be
 * reached throws a retriable UnavailableError, which must not.
 */
export async function decodeConfluent(registry: SchemaRegistry, buf: Buffer): Promise<unknown> {
  if (buf.length < 5 || buf[0] !== 0) {
    throw new DecodeError(buf.length < 5 ? `message of ${buf.length} bytes is too short for the Confluent wire format` : `magic byte ${buf[0]} is not 0 (not Confluent wire format)`);
  }
  const id = buf.readInt32BE(1);
  let schema: { fromBuffer(b: Buffer): unknown };
  try {
    schema = (await registry.getSchema(id)) as unknown as { fromBuffer(b: Buffer): unknown };
  } catch (err) {
    // The registry client reports a refused connection as HTTP 400, so the
    // message decides first: only a definite "no such schema" (404) or a
    // schema avsc cannot use is the message's fault; the rest is an outage.
    const status = httpStatus(err);
    const msg = errorMessage(err);
    // Our credentials or CA, not the message: never a dead letter, never waited out.
    if (status === 401 || status === 403) throw new AuthFailedError(`the schema registry refused the credentials (HTTP ${status}) fetching id ${id}; check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SCHEMA_REGISTRY_BEARER_TOKEN`, { cause: err });
    if (/certificate|self[- ]signed|unable to verify|altnames|SSL routines/i.test(msg)) throw new AuthFailedError(`TLS certificate check failed for the schema registry fetching id ${id}: ${msg}; check SCHEMA_REGISTRY_CA_FILE`, { cause: err });
    const network = /ECONN|ETIMEDOUT|EAI_AGAIN|ENOTFOUND|EHOSTUNREACH|EPIPE|socket hang up|network|timed? ?out/i.test(msg);
    if (!network && (status === 404 || (status === undefined && !(err as { name?: string })?.name?.includes('ResponseError')))) {
      throw new DecodeError(`schema id ${id} ${status === 404 ? 'is not in the registry' : `is not a usable Avro schema: ${msg}`}`, { cause: err });
    }
    throw new UnavailableError('SCHEMA_REGISTRY', `schema registry failed fetching id ${id}: ${msg}`, { cause: err });
  }
  try {
    return schema.fromBuffer(buf.subarray(5));
  } catch (err) {
    throw new DecodeError(`Avro payload does not match schema id ${id}: ${(err as Error).message}`, { cause: err });
  }
}
