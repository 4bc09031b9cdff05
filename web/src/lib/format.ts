// Locale-aware formatting: money, credits, dates (browser zone), durations,
// and the offset label of the quota time zone.
import { scaleOf, unitsToText, parseUnits } from './decimal'

export type Locale = 'en' | 'zh-CN'

/** USD, exactly as the API sent it (at least 2 fractional digits). */
export function formatUsd(value: string | null | undefined, locale: Locale): string {
  const units = parseUnits(value ?? '0') ?? 0n
  const text = unitsToText(units)
  const digits = Math.max(2, Math.min(10, scaleOf(text)))
  const nf = new Intl.NumberFormat(locale, {
    style: 'currency',
    currency: 'USD',
    currencyDisplay: 'narrowSymbol',
    minimumFractionDigits: 2,
    maximumFractionDigits: digits,
  })
  // Intl formats a decimal string exactly (no float rounding).
  return nf.format(text as unknown as number)
}

/** Integer credits, grouped per locale. */
export function formatCredits(value: number | string | null | undefined, locale: Locale): string {
  const nf = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 })
  return nf.format(String(value ?? 0) as unknown as number)
}

export function formatSignedCredits(value: number, locale: Locale): string {
  const nf = new Intl.NumberFormat(locale, { maximumFractionDigits: 0, signDisplay: 'exceptZero' })
  return nf.format(value)
}

export function formatPercent(fraction: number, locale: Locale): string {
  return new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 1 }).format(fraction)
}

/** A timestamp in the browser's zone (or `timeZone` when given). */
export function formatDateTime(iso: string | null | undefined, locale: Locale, timeZone?: string): string {
  if (!iso) return '—'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return new Intl.DateTimeFormat(locale, {
    dateStyle: 'medium',
    timeStyle: 'short',
    ...(timeZone ? { timeZone } : {}),
  }).format(d)
}

/** A duration in seconds as "2 d 3 h 5 min" in the locale's unit names. */
export function formatDuration(seconds: number, locale: Locale): string {
  let s = Math.max(0, Math.floor(seconds))
  const days = Math.floor(s / 86400)
  s -= days * 86400
  const hours = Math.floor(s / 3600)
  s -= hours * 3600
  const minutes = Math.floor(s / 60)
  const secs = s - minutes * 60
  const unit = (n: number, u: string) =>
    new Intl.NumberFormat(locale, { style: 'unit', unit: u, unitDisplay: 'short' }).format(n)
  const parts: string[] = []
  if (days) parts.push(unit(days, 'day'))
  if (hours) parts.push(unit(hours, 'hour'))
  if (minutes && days === 0) parts.push(unit(minutes, 'minute'))
  if (parts.length === 0) parts.push(unit(secs, 'second'))
  return parts.join(locale === 'zh-CN' ? '' : ' ')
}

/** "UTC+08:00" for an offset in minutes east of UTC. */
export function offsetLabel(minutes: number): string {
  const sign = minutes < 0 ? '−' : '+'
  const abs = Math.abs(minutes)
  const hh = String(Math.floor(abs / 60)).padStart(2, '0')
  const mm = String(abs % 60).padStart(2, '0')
  return `UTC${sign}${hh}:${mm}`
}

/**
 * The quota zone's UTC offset as seen in a daily window start (a local
 * midnight): 16:00Z means UTC+08:00, 05:00Z means UTC−05:00.
 */
export function offsetFromDailyStart(windowStart: string): number {
  const d = new Date(windowStart)
  const minutes = d.getUTCHours() * 60 + d.getUTCMinutes()
  if (minutes === 0) return 0
  return minutes <= 720 ? -minutes : 1440 - minutes
}

/** Whether `zone` is an IANA zone this browser knows. */
export function knownZone(zone: string | undefined | null): zone is string {
  if (!zone) return false
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone })
    return true
  } catch {
    return false
  }
}
