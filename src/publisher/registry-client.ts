import { SchemaIncompatibleError, UnavailableError } from '../errors.ts';

/**
 * The few Confluent Schema Registry calls the capture needs, over fetch.
 * Ids are cached per (subject, schema text) so the registry is asked once
 * per table shape, never per message.
 */
const CT = 'application/vnd.schemaregistry.v1+json';

export class RegistryClient {
  private readonly ids = new Map<string, number>();

  constructor(private readonly baseUrl: string) {}

  private async call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl.replace(/\/$/, '')}${path}`, {
        method, headers: { 'content-type': CT, accept: CT }, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new UnavailableError('SCHEMA_REGISTRY', `schema registry unreachable at ${this.baseUrl}: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
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
