/**
 * Errors the API answers with. Every error response body is
 * `{ "error": <message>, "code": <code> }`; the codes are listed in docs/api.md
 * and stay stable, the messages may change.
 */
export type ApiErrorCode =
  | 'INVALID_CUSTOMER_ID'
  | 'INVALID_AS_OF'
  | 'INVALID_QUERY'
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'CUSTOMER_NOT_FOUND'
  | 'NOT_FOUND'
  | 'WAREHOUSE_UNAVAILABLE'
  | 'INTERNAL';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ApiError';
  }

  toBody(): { error: string; code: ApiErrorCode } {
    return { error: this.message, code: this.code };
  }
}

export const badRequest = (code: 'INVALID_CUSTOMER_ID' | 'INVALID_AS_OF' | 'INVALID_QUERY', message: string) =>
  new ApiError(400, code, message);

/** 401 of every route but the public ones, with `WWW-Authenticate: Bearer`. */
export const unauthorized = () => new ApiError(401, 'UNAUTHORIZED', 'missing or wrong bearer token');

export const customerNotFound = (id: string) =>
  new ApiError(404, 'CUSTOMER_NOT_FOUND', `customer ${id} has no lifetime value (unknown, or no qualifying order)`);
