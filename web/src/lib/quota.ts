// What a quota window shows: its state, how full it is, what is left.
import { add, compare, parseUnits, ratio, subtract, unitsToText } from './decimal'
import type { QuotaWindow } from './types'

export type WindowState = 'unlimited' | 'disabled' | 'exhausted' | 'warning' | 'ok'

export interface WindowView {
  state: WindowState
  fraction: number // 0..1, usage, for the bar
  reservedFraction: number // 0..1 - fraction, held by pending reservations
  reserved: string // USD held by pending reservations ("0" if none)
  remaining: string | null // null = unlimited
}

/**
 * As the API decides a check: pending reservations hold room, so what is left
 * is limit − usage − reserved (never negative), and a window with nothing
 * left is exhausted (a check is denied).
 */
export function windowView(w: QuotaWindow): WindowView {
  const reserved = unitsToText(parseUnits(w.reserved_usd ?? '0') ?? 0n)
  if (w.limit_usd === null || w.limit_usd === undefined) {
    return { state: 'unlimited', fraction: 0, reservedFraction: 0, reserved, remaining: null }
  }
  if (compare(w.limit_usd, '0') === 0) {
    return { state: 'disabled', fraction: 1, reservedFraction: 0, reserved, remaining: '0' }
  }
  const committed = add(w.usage_usd, reserved)
  const full = compare(committed, w.limit_usd) >= 0
  const fraction = Math.min(1, ratio(w.usage_usd, w.limit_usd))
  const reservedFraction = Math.min(1 - fraction, ratio(reserved, w.limit_usd))
  const remaining = full ? '0' : subtract(w.limit_usd, committed)
  const state = full ? 'exhausted' : ratio(committed, w.limit_usd) >= 0.8 ? 'warning' : 'ok'
  return { state, fraction, reservedFraction, reserved, remaining }
}

/** The tri-state of a limit input: unlimited (null), disabled ("0"), or a USD cap. */
export type LimitMode = 'none' | 'disabled' | 'cap'

export function limitMode(limit: string | null | undefined): LimitMode {
  if (limit === null || limit === undefined) return 'none'
  return compare(limit, '0') === 0 ? 'disabled' : 'cap'
}
