// config.json beside the bundle: local (dev sign-in) or deployed (OIDC).
export interface ConsoleConfig {
  mode: 'local' | 'oidc'
  api_base_url: string
  issuer?: string
  client_id?: string
  scopes?: string
  quota_time_zone?: string
  platforms: string[]
  auth_sources: string[]
}

export const DEFAULT_PLATFORMS = ['anthropic', 'openai', 'gemini', 'antigravity']
export const AUTH_SOURCES = ['email', 'linuxdo', 'oidc', 'wechat', 'github', 'google', 'dingtalk']

export function normalizeConfig(raw: Partial<ConsoleConfig> | null): ConsoleConfig {
  const r = raw ?? {}
  const list = (v: unknown, d: string[]) =>
    Array.isArray(v) ? v.map(String) : typeof v === 'string' && v.trim() ? v.trim().split(/[\s,]+/) : d
  return {
    mode: r.issuer ? 'oidc' : 'local',
    api_base_url: r.api_base_url ?? '',
    issuer: r.issuer || undefined,
    client_id: r.client_id || undefined,
    scopes: r.scopes || 'openid profile email',
    quota_time_zone: r.quota_time_zone || undefined,
    platforms: list(r.platforms, DEFAULT_PLATFORMS),
    auth_sources: list(r.auth_sources, AUTH_SOURCES),
  }
}

let loaded: ConsoleConfig | null = null

export async function loadConfig(): Promise<ConsoleConfig> {
  if (loaded) return loaded
  let raw: Partial<ConsoleConfig> | null = null
  try {
    const res = await fetch('/config.json', { cache: 'no-store' })
    if (res.ok) raw = await res.json()
  } catch {
    raw = null
  }
  loaded = normalizeConfig(raw)
  return loaded
}

export function config(): ConsoleConfig {
  return loaded ?? normalizeConfig(null)
}
