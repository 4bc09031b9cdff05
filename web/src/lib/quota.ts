// What a quota window shows: its state, how full it is, what is left.
import { compare, ratio, subtract } from './decimal'
import type { QuotaWindow } from './types'

export type WindowState = 'unlimited' | 'disabled' | 'exhausted' | 'warning' | 'ok'

export interface WindowView {
  state: WindowState
  fraction: number // 0..1, for the bar
  remaining: string | null // null = unlimited
}

export function windowView(w: QuotaWindow): WindowView {
  if (w.limit_usd === null || w.limit_usd === undefined) {
    return { state: 'unlimited', fraction: 0, remaining: null }
  }
  if (compare(w.limit_usd, '0') === 0) {
    return { state: 'disabled', fraction: 1, remaining: '0' }
  }
  const used = compare(w.usage_usd, w.limit_usd) >= 0
  const fraction = Math.min(1, ratio(w.usage_usd, w.limit_usd))
  const remaining = used ? '0' : subtract(w.limit_usd, w.usage_usd)
  return { state: used ? 'exhausted' : fraction >= 0.8 ? 'warning' : 'ok', fraction, remaining }
}

/** The tri-state of a limit input: unlimited (null), disabled ("0"), or a USD cap. */
export type LimitMode = 'none' | 'disabled' | 'cap'

export function limitMode(limit: string | null | undefined): LimitMode {
  if (limit === null || limit === undefined) return 'none'
  return compare(limit, '0') === 0 ? 'disabled' : 'cap'
}
