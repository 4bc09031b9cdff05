import { describe, expect, it } from 'vitest'
// The server's own list of codes, read as text at test time.
import rust from '../../../shared/src/error.rs?raw'
import { ApiError, Client, ERROR_CODES, NetworkError, errorKey, toApiError } from './api'

function fakeFetch(status: number, body: unknown, seen: { url?: string; init?: RequestInit } = {}) {
  return (async (url: string, init: RequestInit) => {
    seen.url = url
    seen.init = init
    return new Response(body === undefined ? '' : JSON.stringify(body), { status })
  }) as unknown as typeof fetch
}

describe('API client error mapping', () => {
  it('knows every code the server sends (shared/src/error.rs, Error::code)', () => {
    const body = rust.slice(rust.indexOf('pub fn code('), rust.indexOf('pub fn public_message('))
    const codes = [...body.matchAll(/=> "([a-z_]+)"/g)].map((m) => m[1])
    expect(codes.length).toBeGreaterThan(20)
    expect(codes.filter((c) => !(ERROR_CODES as readonly string[]).includes(c))).toEqual([])
  })
  it('maps every contract code to its own message key', () => {
    for (const code of ERROR_CODES) {
      expect(errorKey(new ApiError(400, code, 'x')).key).toBe(`errors.${code}`)
    }
  })
  it('unknown codes, network failures and other throws', () => {
    expect(errorKey(new ApiError(418, 'teapot', 'x'))).toEqual({ key: 'errors.unknown', params: { code: 'teapot', status: 418 } })
    expect(errorKey(new NetworkError('down')).key).toBe('errors.network')
    expect(errorKey(new Error('boom')).key).toBe('errors.unexpected')
  })
  it('reads the error body, with retry_after_seconds', () => {
    const e = toApiError(429, { error: { code: 'too_many_failed_attempts', message: 'm', retry_after_seconds: 120 } })
    expect(e.code).toBe('too_many_failed_attempts')
    expect(errorKey(e).params.seconds).toBe(120)
    expect(toApiError(502, null).code).toBe('internal')
    expect(toApiError(400, 'not json').code).toBe('invalid_request')
  })
  it('sends the bearer token and idempotency key, and builds query strings', async () => {
    const seen: { url?: string; init?: RequestInit } = {}
    const c = new Client('http://api', () => 'tok', () => {}, fakeFetch(201, { ok: true }, seen))
    await c.post('/v1/me/redemptions', { code: 'X' }, 'key-1')
    const h = seen.init!.headers as Record<string, string>
    expect(h.authorization).toBe('Bearer tok')
    expect(h['idempotency-key']).toBe('key-1')
    expect(seen.init!.body).toBe('{"code":"X"}')
    expect(c.url('/v1/x', { cursor: 'a b', empty: '', n: null, limit: 5 })).toBe('http://api/v1/x?cursor=a+b&limit=5')
  })
  it('throws ApiError and signals 401', async () => {
    let signalled = false
    const c = new Client('', () => null, () => (signalled = true), fakeFetch(401, { error: { code: 'unauthorized', message: 'no' } }))
    await expect(c.get('/v1/me/quotas')).rejects.toMatchObject({ status: 401, code: 'unauthorized' })
    expect(signalled).toBe(true)
    const d = new Client('', () => null, () => {}, fakeFetch(409, { error: { code: 'already_redeemed', message: 'm' } }))
    await expect(d.post('/v1/me/redemptions', { code: 'X' })).rejects.toBeInstanceOf(ApiError)
  })
  it('a fetch failure is a NetworkError', async () => {
    const c = new Client('', () => null, () => {}, (async () => {
      throw new TypeError('failed')
    }) as unknown as typeof fetch)
    await expect(c.get('/x')).rejects.toBeInstanceOf(NetworkError)
  })
})
