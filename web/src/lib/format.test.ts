import { describe, expect, it } from 'vitest'
import { formatCredits, formatDateTime, formatDuration, formatUsd, offsetFromDailyStart, offsetLabel, knownZone } from './format'
import { compare, parseUnits, ratio, subtract, unitsToText, isValidUsd } from './decimal'
import { windowView, limitMode } from './quota'
import { toCsv } from './csv'

describe('decimal', () => {
  it('parses and prints exactly', () => {
    expect(unitsToText(parseUnits('0.0000012500')!)).toBe('0.00000125')
    expect(unitsToText(parseUnits('1.25')!)).toBe('1.25')
    expect(unitsToText(parseUnits('10')!)).toBe('10')
    expect(parseUnits('1e3')).toBeNull()
    expect(parseUnits('0.12345678901')).toBeNull()
  })
  it('subtracts and compares without float error', () => {
    expect(subtract('0.3', '0.1')).toBe('0.2')
    expect(subtract('5', '0.0125')).toBe('4.9875')
    expect(compare('1.10', '1.1')).toBe(0)
    expect(compare('2', '10')).toBe(-1)
    expect(ratio('2.5', '10')).toBe(0.25)
  })
  it('validates USD input', () => {
    expect(isValidUsd('12.5')).toBe(true)
    expect(isValidUsd('-1')).toBe(false)
    expect(isValidUsd('abc')).toBe(false)
  })
})

describe('format', () => {
  it('money per locale, exact digits', () => {
    expect(formatUsd('1234.5', 'en')).toBe('$1,234.50')
    expect(formatUsd('0.0000012500', 'en')).toBe('$0.00000125')
    expect(formatUsd('1234.5', 'zh-CN')).toBe('$1,234.50')
  })
  it('credits grouped per locale', () => {
    expect(formatCredits(1234567, 'en')).toBe('1,234,567')
    expect(formatCredits(-5, 'zh-CN')).toBe('-5')
  })
  it('dates in a given zone and locale', () => {
    expect(formatDateTime('2026-01-02T16:00:00Z', 'en', 'Asia/Shanghai')).toBe('Jan 3, 2026, 12:00 AM')
    expect(formatDateTime('2026-01-02T16:00:00Z', 'zh-CN', 'UTC')).toBe('2026年1月2日 16:00')
    expect(formatDateTime(null, 'en')).toBe('—')
  })
  it('durations in the locale', () => {
    expect(formatDuration(3 * 86400 + 2 * 3600 + 59, 'en')).toBe('3 days 2 hr')
    expect(formatDuration(2 * 3600 + 5 * 60, 'en')).toBe('2 hr 5 min')
    expect(formatDuration(2 * 3600 + 5 * 60, 'zh-CN')).toBe('2小时5分钟')
    expect(formatDuration(-4, 'en')).toBe('0 sec')
  })
  it('quota zone offset from a daily window start', () => {
    expect(offsetLabel(offsetFromDailyStart('2026-01-02T16:00:00Z'))).toBe('UTC+08:00')
    expect(offsetLabel(offsetFromDailyStart('2026-01-02T05:00:00Z'))).toBe('UTC−05:00')
    expect(offsetLabel(offsetFromDailyStart('2026-01-02T00:00:00Z'))).toBe('UTC+00:00')
    expect(offsetLabel(offsetFromDailyStart('2026-01-02T18:30:00Z'))).toBe('UTC+05:30')
    expect(knownZone('Asia/Shanghai')).toBe(true)
    expect(knownZone('Not/AZone')).toBe(false)
  })
})

describe('quota windows', () => {
  const w = (limit: string | null, usage: string) => ({ limit_usd: limit, usage_usd: usage, window_start: '', resets_at: '' })
  it('states', () => {
    expect(windowView(w(null, '3')).state).toBe('unlimited')
    expect(windowView(w(null, '3')).remaining).toBeNull()
    expect(windowView(w('0', '0')).state).toBe('disabled')
    expect(windowView(w('10', '10')).state).toBe('exhausted')
    expect(windowView(w('10', '12')).fraction).toBe(1)
    expect(windowView(w('10', '8.5')).state).toBe('warning')
    expect(windowView(w('10', '2.5'))).toEqual({ state: 'ok', fraction: 0.25, reservedFraction: 0, reserved: '0', remaining: '7.5' })
    expect(limitMode(null)).toBe('none')
    expect(limitMode('0.00')).toBe('disabled')
    expect(limitMode('3')).toBe('cap')
  })
  it('pending reservations hold room: remaining = limit − usage − reserved', () => {
    const held = (limit: string | null, usage: string, reserved: string) => ({ ...w(limit, usage), reserved_usd: reserved })
    expect(windowView(held('1', '0.25', '0.2000'))).toEqual({
      state: 'ok',
      fraction: 0.25,
      reservedFraction: 0.2,
      reserved: '0.2',
      remaining: '0.55',
    })
    // Usage below the cap, but the holds fill it: a check is denied.
    const full = windowView(held('10', '3', '7'))
    expect(full.state).toBe('exhausted')
    expect(full.remaining).toBe('0')
    expect(full.fraction + full.reservedFraction).toBe(1)
    expect(windowView(held('10', '3', '5.5')).state).toBe('warning')
    // Overshoot (usage is real spend): the bar never passes 100 %.
    expect(windowView(held('10', '12', '1')).reservedFraction).toBe(0)
    expect(windowView(held(null, '3', '2')).reserved).toBe('2')
  })
})

describe('csv', () => {
  it('quotes what needs quoting', () => {
    expect(toCsv([['code', 'name'], ['A-1', 'x, "y"']])).toBe('code,name\r\nA-1,"x, ""y"""\r\n')
  })
})
