import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type Agent } from 'node:https';
import { registryAgent, registryAuthorization, type RegistryConnection } from '../config/registry.ts';
import { AuthFailedError, SchemaIncompatibleError, UnavailableError } from '../errors.ts';

/**
 * The few Confluent Schema Registry calls the capture needs, over node's
 * http(s) (fetch cannot be given a CA file without undici's Agent).
 * Basic auth or a bearer token and the CA come from the connection
 * (src/config/registry.ts); a 401 or 403 is a RegistryAuthError naming the
 * setting.
 * Ids are cached per (subject, schema text) so the registry is asked once
 * per table shape, never per message.
 */
const CT = 'application/vnd.schemaregistry.v1+json';

export class RegistryClient {
  private readonly ids = new Map<string, number>();

  private readonly baseUrl: string;
  private readonly authorization: string | undefined;
  private readonly agent: Agent | undefined;

  constructor(conn: RegistryConnection | string) {
    const c: RegistryConnection = typeof conn === 'string' ? { url: conn } : conn;
    this.baseUrl = c.url.replace(/\/$/, '');
    this.authorization = registryAuthorization(c);
    this.agent = registryAgent(c);
  }

  private async call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    let res: { status: number; text: string };
    try {
      res = await this.send(method, path, body === undefined ? undefined : JSON.stringify(body));
    } catch (err) {
      throw new UnavailableError('SCHEMA_REGISTRY', `schema registry unreachable at ${this.baseUrl}: ${(err as Error).message}`, { cause: err });
    }
    if (res.status === 401 || res.status === 403) throw registryAuthError(this.baseUrl, res.status, this.authorization !== undefined);
    return { status: res.status, json: res.text ? JSON.parse(res.text) : null };
  }

  private send(method: string, path: string, body: string | undefined): Promise<{ status: number; text: string }> {
    const url = new URL(`${this.baseUrl}${path}`);
    const headers: Record<string, string> = { 'content-type': CT, accept: CT };
    if (this.authorization) headers.authorization = this.authorization;
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(url, { method, headers, ...(this.agent ? { agent: this.agent } : {}), timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end(body);
    });
  }

  async register(subject: string, schema: unknown): Promise<number> {
    const text = JSON.stringify(schema);
    const cacheKey = `${subject}\0${text}`;
    const cached = this.ids.get(cacheKey);
    if (cached !== undefined) return cached;
    const { status, json } = await this.call('POST', `/subjects/${encodeURIComponent(subject)}/versions`, { schema: text });
    if (status === 409) throw new SchemaIncompatibleError(`registry refused a new version of ${subject}: ${json?.message ?? 'incompatible'}`);
    if (status !== 200 || typeof json?.id !== 'number') {
      throw new UnavailableError('SCHEMA_REGISTRY', `registering ${subject} failed: HTTP ${status} ${json?.message ?? ''}`);
    }
    this.ids.set(cacheKey, json.id);
    return json.id;
  }

  /** The latest registered schema of a subject, or null if it has none. */
  async latest(subject: string): Promise<any | null> {
    const { status, json } = await this.call('GET', `/subjects/${encodeURIComponent(subject)}/versions/latest`);
    if (status === 404) return null;
    if (status !== 200) throw new UnavailableError('SCHEMA_REGISTRY', `reading ${subject} failed: HTTP ${status}`);
    return JSON.parse(json.schema);
  }
}

/** The registry refused our credentials: fatal, and the line names the settings. */
export function registryAuthError(url: string, status: number, sent: boolean): AuthFailedError {
  const what = sent ? 'refused the credentials' : 'requires credentials';
  return new AuthFailedError(`the schema registry at ${url} (SCHEMA_REGISTRY_URL) ${what} (HTTP ${status}); check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SCHEMA_REGISTRY_BEARER_TOKEN`);
}
