import { CdcError, type ErrorCode } from '../errors.ts';

/**
 * An error the registry answers over HTTP: the HTTP status plus Confluent's
 * `error_code`, which clients (kafkajs, the Java client, Connect) switch on.
 */
export class RegistryRestError extends CdcError {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  constructor(
    readonly status: number,
    readonly errorCode: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = status === 409 ? 'SCHEMA_INCOMPATIBLE' : status === 422 ? 'VALIDATION_FAILED' : 'SCHEMA_REGISTRY';
    this.retriable = status >= 500;
  }

  toBody(): { error_code: number; message: string } {
    return { error_code: this.errorCode, message: this.message };
  }
}

// Messages follow Confluent's wording so that logs and client errors read the same.
export const restErrors = {
  subjectNotFound: (subject: string) => new RegistryRestError(404, 40401, `Subject '${subject}' not found.`),
  versionNotFound: (version: number | string) => new RegistryRestError(404, 40402, `Version ${version} not found.`),
  schemaNotFound: (id?: number | string) =>
    new RegistryRestError(404, 40403, id === undefined ? 'Schema not found' : `Schema ${id} not found`),
  subjectSoftDeleted: (subject: string) =>
    new RegistryRestError(404, 40404, `Subject '${subject}' was soft deleted.Set permanent=true to delete permanently`),
  subjectNotSoftDeleted: (subject: string) =>
    new RegistryRestError(404, 40405, `Subject '${subject}' was not deleted first before being permanently deleted`),
  versionSoftDeleted: (subject: string, version: number | string) =>
    new RegistryRestError(404, 40406, `Subject '${subject}' Version ${version} was soft deleted.Set permanent=true to delete permanently`),
  versionNotSoftDeleted: (subject: string, version: number | string) =>
    new RegistryRestError(404, 40407, `Subject '${subject}' Version ${version} was not deleted first before being permanently deleted`),
  subjectConfigNotFound: (subject: string) =>
    new RegistryRestError(404, 40408, `Subject '${subject}' does not have subject-level compatibility configured`),
  incompatible: (subject: string, details: string[]) =>
    new RegistryRestError(
      409,
      409,
      `Schema being registered is incompatible with an earlier schema for subject "${subject}", details: [${details.join('; ')}]`,
    ),
  invalidSchema: (reason: string) => new RegistryRestError(422, 42201, `Invalid schema: ${reason}`),
  invalidVersion: (version: string) =>
    new RegistryRestError(
      422,
      42202,
      `The specified version '${version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`,
    ),
  invalidCompatibility: () =>
    new RegistryRestError(
      422,
      42203,
      'Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive',
    ),
  invalidSubject: (subject: string) =>
    new RegistryRestError(422, 42208, `The specified subject '${subject}' is not a valid subject name`),
  badRequest: (message: string) => new RegistryRestError(400, 400, message),
  store: (message: string, cause?: unknown) => new RegistryRestError(500, 50001, message, { cause }),
};
