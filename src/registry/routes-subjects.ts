import type { FastifyInstance } from 'fastify';
import type avsc from 'avsc';
import type { Logger } from '../logger.ts';
import { checkCompatibility, parseAvroSchema, versionsToCheck, type CompatibilityLevel, type ParsedSchema } from './compatibility.ts';
import { restErrors } from './errors.ts';
import { checkSubjectName, flag, page, parseSchemaRequest, parseVersion, sendJson, sendRaw, stringParam } from './http.ts';
import type { RegistryStore, SubjectVersion } from './store.ts';

type SubjectParams = { Params: { subject: string } };
type VersionParams = { Params: { subject: string; version: string } };

/** /subjects/** and /compatibility/**: registration, lookup, listing, deletes and compatibility checks. */
export function registerSubjectRoutes(app: FastifyInstance, store: RegistryStore, log: Logger): void {
  // deletedOnly wins over deleted, as in Confluent's LookupFilter.
  app.get('/subjects', async (req, reply) => {
    const prefix = stringParam(req.query, 'subjectPrefix') ?? '';
    const subjects = flag(req.query, 'deletedOnly') ? await store.deletedSubjects(prefix) : await store.subjects(flag(req.query, 'deleted'), prefix);
    return sendJson(req, reply, page(req.query, subjects));
  });

  app.post<SubjectParams>('/subjects/:subject/versions', async (req, reply) => {
    const { subject } = req.params;
    checkSubjectName(subject);
    const request = parseSchemaRequest(req.body);
    const candidate = parseOrReject(request.schema);
    const outcome = await store.register(
      subject,
      { schema: request.schema, schemaType: request.schemaType, canonical: candidate.canonical, fingerprint: candidate.fingerprint },
      (live, level) => check(candidate.type, live, level),
    );
    if (outcome.kind === 'incompatible') {
      log.info({ subject, reasons: outcome.messages }, 'rejected incompatible schema');
      throw restErrors.incompatible(subject, outcome.messages);
    }
    if (outcome.kind === 'created') log.info({ subject, id: outcome.id, version: outcome.version }, 'registered schema');
    return sendJson(req, reply, { id: outcome.id });
  });

  // Lookup: has this schema been registered under the subject?
  app.post<SubjectParams>('/subjects/:subject', async (req, reply) => {
    const { subject } = req.params;
    const deleted = flag(req.query, 'deleted');
    if (!(await store.hasSubject(subject, deleted))) throw restErrors.subjectNotFound(subject);
    const request = parseSchemaRequest(req.body);
    const candidate = parseOrReject(request.schema);
    const found = await store.lookup(subject, candidate.fingerprint, deleted);
    if (!found) throw restErrors.schemaNotFound();
    return sendJson(req, reply, versionBody(found));
  });

  app.delete<SubjectParams>('/subjects/:subject', async (req, reply) =>
    sendJson(req, reply, await store.deleteSubject(req.params.subject, flag(req.query, 'permanent'))),
  );

  // 40401 when the subject has no version (soft-deleted ones count with deleted or
  // deletedOnly); otherwise the filtered list, possibly empty, as Confluent.
  app.get<SubjectParams>('/subjects/:subject/versions', async (req, reply) => {
    const deletedOnly = flag(req.query, 'deletedOnly');
    const versions = await store.versions(req.params.subject, deletedOnly || flag(req.query, 'deleted'));
    if (versions.length === 0) throw restErrors.subjectNotFound(req.params.subject);
    return sendJson(req, reply, page(req.query, deletedOnly ? versions.filter((v) => v.deleted) : versions).map((v) => v.version));
  });

  app.get<VersionParams>('/subjects/:subject/versions/:version', async (req, reply) => {
    const found = await findVersion(store, req.params.subject, req.params.version, flag(req.query, 'deleted'));
    return sendJson(req, reply, versionBody(found));
  });

  app.get<VersionParams>('/subjects/:subject/versions/:version/schema', async (req, reply) => {
    const found = await findVersion(store, req.params.subject, req.params.version, flag(req.query, 'deleted'));
    return sendRaw(req, reply, found.schema);
  });

  app.delete<VersionParams>('/subjects/:subject/versions/:version', async (req, reply) => {
    const version = parseVersion(req.params.version);
    const deleted = await store.deleteVersion(req.params.subject, version, flag(req.query, 'permanent'));
    return sendJson(req, reply, deleted);
  });

  // Without a version: check against what a registration would be checked against.
  app.post<SubjectParams>('/compatibility/subjects/:subject/versions', async (req, reply) => {
    const candidate = parseOrReject(parseSchemaRequest(req.body).schema);
    const [live, level] = await Promise.all([store.versions(req.params.subject, false), store.subjectLevel(req.params.subject, true)]);
    return sendCompatibility(req, reply, check(candidate.type, live, level!));
  });

  app.post<VersionParams>('/compatibility/subjects/:subject/versions/:version', async (req, reply) => {
    const { subject } = req.params;
    const version = parseVersion(req.params.version);
    const candidate = parseOrReject(parseSchemaRequest(req.body).schema);
    const level = (await store.subjectLevel(subject, true))!;
    if (version === -1) {
      // "latest" on a subject with no live versions is compatible, as in Confluent.
      return sendCompatibility(req, reply, check(candidate.type, await store.versions(subject, false), level));
    }
    const target = await store.version(subject, version, false);
    if (!target) {
      if (!(await store.hasSubject(subject, false))) throw restErrors.subjectNotFound(subject);
      throw restErrors.versionNotFound(version);
    }
    return sendCompatibility(req, reply, check(candidate.type, [target], level));
  });

  function sendCompatibility(req: Parameters<typeof sendJson>[0], reply: Parameters<typeof sendJson>[1], messages: string[]) {
    const body: { is_compatible: boolean; messages?: string[] } = { is_compatible: messages.length === 0 };
    if (flag(req.query, 'verbose')) body.messages = messages;
    return sendJson(req, reply, body);
  }
}

function parseOrReject(text: string): ParsedSchema {
  const parsed = parseAvroSchema(text);
  if (!parsed.ok) throw restErrors.invalidSchema(parsed.reason);
  return parsed.schema;
}

/** Parses only the stored versions the level looks at. */
function check(candidate: avsc.Type, live: SubjectVersion[], level: CompatibilityLevel): string[] {
  const previous = versionsToCheck(live, level).map((v) => {
    const parsed = parseAvroSchema(v.schema);
    if (!parsed.ok) throw restErrors.store(`stored schema ${v.id} no longer parses: ${parsed.reason}`);
    return { version: v.version, type: parsed.schema.type };
  });
  return checkCompatibility(candidate, previous, level);
}

async function findVersion(store: RegistryStore, subject: string, rawVersion: string, deleted: boolean): Promise<SubjectVersion> {
  const version = parseVersion(rawVersion);
  const found = await store.version(subject, version, deleted);
  if (found) return found;
  if (!(await store.hasSubject(subject, deleted))) throw restErrors.subjectNotFound(subject);
  throw restErrors.versionNotFound(version);
}

export function versionBody(v: SubjectVersion): Record<string, unknown> {
  const body: Record<string, unknown> = { subject: v.subject, version: v.version, id: v.id, schema: v.schema };
  if (v.schemaType !== 'AVRO') body.schemaType = v.schemaType;
  return body;
}
