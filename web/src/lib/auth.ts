// The signed-in session: a bearer token in sessionStorage (never in a URL),
// from the local stack's dev sign-in or from OpenID Connect (code + PKCE).
import { reactive } from 'vue'
import { config } from './config'
import { ApiError, toApiError } from './api'

export type Role = 'user' | 'admin'

export interface Session {
  token: string
  user_id: string
  role: Role
  expires_at: number // epoch ms
}

const KEY = 'spendguard.session'
const PKCE_KEY = 'spendguard.pkce'

function read(): Session | null {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) ?? 'null') as Session | null
    if (s && s.expires_at > Date.now()) return s
  } catch {
    /* nothing stored */
  }
  return null
}

export const auth = reactive<{ session: Session | null }>({ session: read() })

export function token(): string | null {
  const s = auth.session
  if (!s) return null
  if (s.expires_at <= Date.now()) {
    signOut()
    return null
  }
  return s.token
}

function store(s: Session) {
  auth.session = s
  sessionStorage.setItem(KEY, JSON.stringify(s))
}

export function signOut() {
  auth.session = null
  sessionStorage.removeItem(KEY)
}

export const isAdmin = () => auth.session?.role === 'admin'

/** Claims of a JWT (not verified: the API verifies; this only reads sub, groups, exp). */
export function claims(jwt: string): Record<string, unknown> {
  const part = jwt.split('.')[1] ?? ''
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=')
  const bin = atob(b64)
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0))
  return JSON.parse(new TextDecoder().decode(bytes))
}

/** Admin when `cognito:groups` contains `admin` (array, `[a b]`, `a,b` or JSON text). */
export function roleOf(c: Record<string, unknown>): Role {
  const g = c['cognito:groups']
  let groups: string[] = []
  if (Array.isArray(g)) groups = g.map(String)
  else if (typeof g === 'string') {
    const t = g.trim()
    if (t.startsWith('[') && t.includes('"')) {
      try {
        groups = JSON.parse(t)
      } catch {
        groups = []
      }
    } else groups = t.replace(/^\[|\]$/g, '').split(/[\s,]+/)
  }
  return groups.includes('admin') ? 'admin' : 'user'
}

/** Local stack only: POST /local/sign-in mints a dev token. */
export async function devSignIn(userId: string, role: Role): Promise<Session> {
  const res = await fetch('/local/sign-in', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: userId, role }),
  })
  const body = await res.json().catch(() => null)
  if (!res.ok) throw toApiError(res.status, body)
  const s: Session = {
    token: body.token,
    user_id: body.user_id,
    role: body.role,
    expires_at: Date.parse(body.expires_at),
  }
  store(s)
  return s
}

// --- OpenID Connect, authorization code + PKCE ---

function b64url(bytes: ArrayBuffer | Uint8Array): string {
  const arr = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)
  let s = ''
  for (const b of arr) s += String.fromCharCode(b)
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

function randomString(n = 32): string {
  return b64url(crypto.getRandomValues(new Uint8Array(n)))
}

export async function pkceChallenge(verifier: string): Promise<string> {
  return b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)))
}

async function discovery(issuer: string) {
  const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`)
  if (!res.ok) throw new ApiError(res.status, 'oidc_discovery', 'discovery failed')
  return (await res.json()) as { authorization_endpoint: string; token_endpoint: string }
}

const redirectUri = () => `${location.origin}/callback`

export async function oidcStart(returnTo = '/') {
  const c = config()
  if (!c.issuer || !c.client_id) throw new Error('no issuer configured')
  const d = await discovery(c.issuer)
  const verifier = randomString(48)
  const state = randomString(16)
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, returnTo }))
  const url = new URL(d.authorization_endpoint)
  url.searchParams.set('response_type', 'code')
  url.searchParams.set('client_id', c.client_id)
  url.searchParams.set('redirect_uri', redirectUri())
  url.searchParams.set('scope', c.scopes ?? 'openid')
  url.searchParams.set('state', state)
  url.searchParams.set('code_challenge', await pkceChallenge(verifier))
  url.searchParams.set('code_challenge_method', 'S256')
  location.assign(url.toString())
}

/** On /callback: exchanges the code for tokens; returns where to go next. */
export async function oidcFinish(search: string): Promise<string> {
  const c = config()
  const params = new URLSearchParams(search)
  const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) ?? 'null')
  sessionStorage.removeItem(PKCE_KEY)
  // The code must not linger in the address bar or history.
  history.replaceState(null, '', '/callback')
  if (params.get('error')) throw new ApiError(401, 'unauthorized', params.get('error') ?? '')
  if (!saved || params.get('state') !== saved.state || !params.get('code')) {
    throw new ApiError(401, 'unauthorized', 'state mismatch')
  }
  const d = await discovery(c.issuer!)
  const res = await fetch(d.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code')!,
      redirect_uri: redirectUri(),
      client_id: c.client_id!,
      code_verifier: saved.verifier,
    }),
  })
  if (!res.ok) throw new ApiError(401, 'unauthorized', 'token exchange failed')
  const tokens = (await res.json()) as { access_token: string; id_token?: string; expires_in?: number }
  // The HTTP API's JWT authorizer takes the access token (its aud/client_id).
  const access = claims(tokens.access_token)
  const id = tokens.id_token ? claims(tokens.id_token) : {}
  store({
    token: tokens.access_token,
    user_id: String(access.sub ?? id.sub ?? ''),
    role: roleOf({ ...id, ...access }),
    expires_at: typeof access.exp === 'number' ? access.exp * 1000 : Date.now() + (tokens.expires_in ?? 3600) * 1000,
  })
  return saved.returnTo || '/'
}
