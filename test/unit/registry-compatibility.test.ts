import { describe, expect, it } from 'vitest';
import {
  checkCompatibility,
  COMPATIBILITY_LEVELS,
  parseAvroSchema,
  parseCompatibilityLevel,
  versionsToCheck,
  type CompatibilityLevel,
  type ParsedSchema,
  type PreviousSchema,
} from '../../src/registry/compatibility.ts';

function parse(schema: unknown): ParsedSchema {
  const r = parseAvroSchema(typeof schema === 'string' ? schema : JSON.stringify(schema));
  if (!r.ok) throw new Error(r.reason);
  return r.schema;
}

const field = (name: string, type: unknown, extra: Record<string, unknown> = {}) => ({ name, type, ...extra });
const user = (...fields: unknown[]) => ({ type: 'record', name: 'User', namespace: 'shop', fields });

const v1 = user(field('id', 'long'), field('name', 'string'));
// v1 plus a field with a default: readable both ways.
const withDefault = user(field('id', 'long'), field('name', 'string'), field('email', ['null', 'string'], { default: null }));
// v1 plus a required field: new readers cannot fill it from old data.
const withRequired = user(field('id', 'long'), field('name', 'string'), field('email', 'string'));
// v1 minus a required field: old readers cannot fill it from new data.
const withoutName = user(field('id', 'long'));

function history(...schemas: unknown[]): PreviousSchema[] {
  return schemas.map((s, i) => ({ version: i + 1, type: parse(s).type }));
}

function compatible(candidate: unknown, previous: unknown[], level: CompatibilityLevel): boolean {
  return checkCompatibility(parse(candidate).type, history(...previous), level).length === 0;
}

describe('compatibility levels, one previous version', () => {
  const cases: [string, unknown, Record<CompatibilityLevel, boolean>][] = [
    [
      'adding a field with a default',
      withDefault,
      { NONE: true, BACKWARD: true, BACKWARD_TRANSITIVE: true, FORWARD: true, FORWARD_TRANSITIVE: true, FULL: true, FULL_TRANSITIVE: true },
    ],
    [
      'adding a required field',
      withRequired,
      { NONE: true, BACKWARD: false, BACKWARD_TRANSITIVE: false, FORWARD: true, FORWARD_TRANSITIVE: true, FULL: false, FULL_TRANSITIVE: false },
    ],
    [
      'removing a required field',
      withoutName,
      { NONE: true, BACKWARD: true, BACKWARD_TRANSITIVE: true, FORWARD: false, FORWARD_TRANSITIVE: false, FULL: false, FULL_TRANSITIVE: false },
    ],
    [
      'changing a field type long -> string',
      user(field('id', 'string'), field('name', 'string')),
      { NONE: true, BACKWARD: false, BACKWARD_TRANSITIVE: false, FORWARD: false, FORWARD_TRANSITIVE: false, FULL: false, FULL_TRANSITIVE: false },
    ],
  ];
  for (const [name, candidate, expected] of cases) {
    for (const level of COMPATIBILITY_LEVELS) {
      it(`${name} under ${level} is ${expected[level] ? 'compatible' : 'incompatible'}`, () => {
        expect(compatible(candidate, [v1], level)).toBe(expected[level]);
      });
    }
  }

  it('widening int -> long is backward (new reads old) but not forward', () => {
    const intId = user(field('id', 'int'));
    const longId = user(field('id', 'long'));
    expect(compatible(longId, [intId], 'BACKWARD')).toBe(true);
    expect(compatible(longId, [intId], 'FORWARD')).toBe(false);
    expect(compatible(intId, [longId], 'FORWARD')).toBe(true);
    expect(compatible(intId, [longId], 'BACKWARD')).toBe(false);
  });

  it('an enum losing a symbol is backward-incompatible unless the reader has a default', () => {
    const ab = { type: 'enum', name: 'Status', symbols: ['A', 'B'] };
    expect(compatible({ type: 'enum', name: 'Status', symbols: ['A'] }, [ab], 'BACKWARD')).toBe(false);
    expect(compatible({ type: 'enum', name: 'Status', symbols: ['A'], default: 'A' }, [ab], 'BACKWARD')).toBe(true);
  });
});

describe('transitive vs non-transitive', () => {
  // A history where the candidate is compatible with the latest version but not with the first one.
  const first = user(field('id', 'long'));
  const second = user(field('id', 'long'), field('name', 'string', { default: '' }));
  // Candidate requires `name` with no default: v2 data carries `name`, v1 data does not.
  const candidate = user(field('id', 'long'), field('name', 'string'));

  it('BACKWARD checks only the latest version', () => {
    expect(compatible(candidate, [first, second], 'BACKWARD')).toBe(true);
  });

  it('BACKWARD_TRANSITIVE checks every version', () => {
    const messages = checkCompatibility(parse(candidate).type, history(first, second), 'BACKWARD_TRANSITIVE');
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain('version 1');
    expect(messages[0]).toMatch(/name/);
  });

  it('FORWARD vs FORWARD_TRANSITIVE', () => {
    // Old readers: v1 {id, flag(required)}, v2 {id, flag default}. Candidate drops `flag`.
    const r1 = user(field('id', 'long'), field('flag', 'boolean'));
    const r2 = user(field('id', 'long'), field('flag', 'boolean', { default: false }));
    const dropped = user(field('id', 'long'));
    expect(compatible(dropped, [r1, r2], 'FORWARD')).toBe(true);
    expect(compatible(dropped, [r1, r2], 'FORWARD_TRANSITIVE')).toBe(false);
  });

  it('FULL vs FULL_TRANSITIVE', () => {
    expect(compatible(candidate, [first, second], 'FULL')).toBe(true);
    expect(compatible(candidate, [first, second], 'FULL_TRANSITIVE')).toBe(false);
  });

  it('versionsToCheck picks latest for non-transitive, all for transitive, none for NONE', () => {
    expect(versionsToCheck([1, 2, 3], 'BACKWARD')).toEqual([3]);
    expect(versionsToCheck([1, 2, 3], 'FULL_TRANSITIVE')).toEqual([1, 2, 3]);
    expect(versionsToCheck([1, 2, 3], 'NONE')).toEqual([]);
    expect(checkCompatibility(parse(candidate).type, [], 'FULL_TRANSITIVE')).toEqual([]);
  });
});

describe('messages', () => {
  it('say which direction failed and carry the resolver error', () => {
    const [backward] = checkCompatibility(parse(withRequired).type, history(v1), 'BACKWARD');
    expect(backward).toContain('new schema cannot read data written with version 1');
    expect(backward).toContain('no matching field for default-less shop.User.email');
    const [forward] = checkCompatibility(parse(withoutName).type, history(v1), 'FORWARD');
    expect(forward).toContain('version 1 cannot read data written with the new schema');
    const full = checkCompatibility(parse(user(field('id', 'string'))).type, history(v1), 'FULL');
    expect(full).toHaveLength(2);
  });
});

describe('parsing and identity', () => {
  it('rejects invalid JSON and invalid Avro with a reason', () => {
    expect(parseAvroSchema('{nope')).toMatchObject({ ok: false });
    const r = parseAvroSchema(JSON.stringify({ type: 'record', name: 'X', fields: [{ name: 'a', type: 'nope' }] }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain('nope');
    expect(parseAvroSchema(JSON.stringify({ type: 'record', name: 'X', fields: [{ name: 'a', type: 'int', default: 'x' }] })).ok).toBe(false);
  });

  it('gives layout-only differences the same canonical form and fingerprint', () => {
    const a = parse('{"type":"record","name":"U","fields":[{"name":"id","type":"long"}]}');
    const b = parse('{ "fields": [ { "type": {"type": "long"}, "name": "id" } ],\n "name": "U", "type": "record" }');
    expect(b.canonical).toBe(a.canonical);
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(parse('"string"').canonical).toBe(parse('{"type":"string"}').canonical);
  });

  it('keeps meaningful differences apart (defaults, docs, logical types)', () => {
    const base = parse(user(field('n', 'int')));
    expect(parse(user(field('n', 'int', { default: 0 }))).fingerprint).not.toBe(base.fingerprint);
    expect(parse(user(field('n', 'int', { doc: 'count' }))).fingerprint).not.toBe(base.fingerprint);
    expect(parse(user(field('n', { type: 'int', logicalType: 'date' }))).fingerprint).not.toBe(base.fingerprint);
  });

  it('does not collapse a default value that looks like a schema', () => {
    const map = (d: unknown) => user(field('m', { type: 'map', values: 'string' }, { default: d }));
    expect(parse(map({ type: 'int' })).canonical).toContain('"default":{"type":"int"}');
  });

  it('parses compatibility level names case-insensitively', () => {
    expect(parseCompatibilityLevel('full_transitive')).toBe('FULL_TRANSITIVE');
    expect(parseCompatibilityLevel(' Backward ')).toBe('BACKWARD');
    expect(parseCompatibilityLevel('SIDEWAYS')).toBeUndefined();
    expect(parseCompatibilityLevel(undefined)).toBeUndefined();
  });
});
