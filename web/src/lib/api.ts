// The one HTTP client of the console: every call goes through the public API
// with the signed-in user's bearer token; errors become ApiError with the
// contract's error code, mapped to a sentence by errorKey().

/** Every error code the API sends (docs/openapi.yaml, Error.code; shared/src/error.rs: api.test.ts checks). */
export const ERROR_CODES = [
  'unauthorized',
  'forbidden',
  'route_not_found',
  'invalid_request',
  'invalid_amount',
  'invalid_id',
  'unknown_platform',
  'unknown_auth_source',
  'duplicate_platform',
  'invalid_window',
  'payload_too_large',
  'invalid_idempotency_key',
  'invalid_timestamp',
  'idempotency_key_mismatch',
  'idempotency_key_in_use',
  'insufficient_credits',
  'balance_overflow',
  'code_not_found',
  'code_disabled',
  'code_expired',
  'code_exhausted',
  'already_redeemed',
  'redemption_in_progress',
  'too_many_failed_attempts',
  'conflict',
  'reservation_not_found',
  'reservation_not_pending',
  'not_found',
  'request_timeout',
  'event_payload_mismatch',
  'not_implemented',
  'store_unavailable',
  'internal',
] as const
export type ErrorCode = (typeof ERROR_CODES)[number]

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

/** The client could not reach the API at all. */
export class NetworkError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NetworkError'
  }
}

export interface ErrorText {
  key: string
  params: Record<string, string | number>
}

/** The i18n key (under `errors.`) and parameters for any thrown value. */
export function errorKey(err: unknown): ErrorText {
  if (err instanceof ApiError) {
    if ((ERROR_CODES as readonly string[]).includes(err.code)) {
      return {
        key: `errors.${err.code}`,
        params: { seconds: err.retryAfterSeconds ?? 0, status: err.status },
      }
    }
    return { key: 'errors.unknown', params: { code: err.code, status: err.status } }
  }
  if (err instanceof NetworkError) return { key: 'errors.network', params: {} }
  return { key: 'errors.unexpected', params: {} }
}

/** Reads an error body `{"error": {"code", "message", ...}}` into an ApiError. */
export function toApiError(status: number, body: unknown): ApiError {
  const e = (body as { error?: { code?: unknown; message?: unknown; retry_after_seconds?: unknown } })?.error
  const code = typeof e?.code === 'string' ? e.code : status >= 500 ? 'internal' : 'invalid_request'
  const message = typeof e?.message === 'string' ? e.message : `HTTP ${status}`
  const retry = typeof e?.retry_after_seconds === 'number' ? e.retry_after_seconds : null
  return new ApiError(status, code, message, retry)
}

export interface Page<T> {
  items: T[]
  next_cursor: string | null
}

export interface RequestOptions {
  method?: string
  body?: unknown
  query?: Record<string, string | number | undefined | null>
  idempotencyKey?: string
}

type TokenSource = () => string | null
type UnauthorizedHandler = () => void

export class Client {
  constructor(
    private base: string,
    private token: TokenSource,
    private onUnauthorized: UnauthorizedHandler = () => {},
    private fetchImpl: typeof fetch = (...a) => fetch(...a),
  ) {}

  url(path: string, query?: RequestOptions['query']): string {
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined && v !== null && v !== '') params.set(k, String(v))
    }
    const qs = params.toString()
    return `${this.base.replace(/\/$/, '')}${path}${qs ? '?' + qs : ''}`
  }

  async request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' }
    const token = this.token()
    if (token) headers.authorization = `Bearer ${token}`
    if (opts.body !== undefined) headers['content-type'] = 'application/json'
    if (opts.idempotencyKey) headers['idempotency-key'] = opts.idempotencyKey
    let res: Response
    try {
      res = await this.fetchImpl(this.url(path, opts.query), {
        method: opts.method ?? 'GET',
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      })
    } catch (e) {
      throw new NetworkError(String(e))
    }
    const text = await res.text()
    let body: unknown = null
    if (text) {
      try {
        body = JSON.parse(text)
      } catch {
        body = null
      }
    }
    if (!res.ok) {
      const err = toApiError(res.status, body)
      if (res.status === 401) this.onUnauthorized()
      throw err
    }
    return body as T
  }

  get<T>(path: string, query?: RequestOptions['query']) {
    return this.request<T>(path, { query })
  }
  post<T>(path: string, body: unknown, idempotencyKey?: string) {
    return this.request<T>(path, { method: 'POST', body, idempotencyKey })
  }
  put<T>(path: string, body: unknown) {
    return this.request<T>(path, { method: 'PUT', body })
  }
  patch<T>(path: string, body: unknown) {
    return this.request<T>(path, { method: 'PATCH', body })
  }
}

/** A fresh Idempotency-Key. */
export function newIdempotencyKey(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return crypto.randomUUID()
  return `k-${Date.now()}-${Math.random().toString(36).slice(2)}`
}

/** Path segment of an id (ids are `[A-Za-z0-9._:@-]`, so this is a no-op for valid ones). */
export const seg = (s: string) => encodeURIComponent(s)
