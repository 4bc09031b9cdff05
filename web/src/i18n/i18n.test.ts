import { describe, expect, it } from 'vitest'
import en from './en'
import zh from './zh-CN'
import { ERROR_CODES } from '../lib/api'
import { AUTH_SOURCES } from '../lib/config'

type Tree = { [k: string]: string | Tree }
function flatten(t: Tree, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(t)) {
    const key = prefix ? `${prefix}.${k}` : k
    if (typeof v === 'string') out[key] = v
    else Object.assign(out, flatten(v, key))
  }
  return out
}
const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort()

describe('i18n tables', () => {
  const e = flatten(en as Tree)
  const z = flatten(zh as Tree)
  it('no key is missing in either language', () => {
    expect(Object.keys(z).filter((k) => !(k in e))).toEqual([])
    expect(Object.keys(e).filter((k) => !(k in z))).toEqual([])
  })
  it('no message is empty and placeholders match', () => {
    for (const k of Object.keys(e)) {
      expect(e[k].trim(), k).not.toBe('')
      expect(z[k].trim(), k).not.toBe('')
      expect(placeholders(z[k]), k).toEqual(placeholders(e[k]))
    }
  })
  it('every contract error code has a sentence in both languages', () => {
    for (const code of ERROR_CODES) {
      expect(e[`errors.${code}`], code).toBeTruthy()
      expect(z[`errors.${code}`], code).toBeTruthy()
    }
  })
  it('every auth source, window and status has a name', () => {
    for (const s of AUTH_SOURCES) expect(z[`defaults.sources.${s}`]).toBeTruthy()
    for (const w of ['daily', 'weekly', 'monthly']) expect(z[`quota.windows.${w}`]).toBeTruthy()
  })
  it('Chinese copy is actually translated', () => {
    const same = Object.keys(e).filter((k) => e[k] === z[k] && /[a-z]{4,}/i.test(e[k]) && !/^\{|GitHub|Google|OIDC|LINUX DO/.test(e[k]))
    expect(same).toEqual([])
  })
})
