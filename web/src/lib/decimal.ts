// Exact USD decimals as the API sends them ("0.0000012500", "1.25"): at most
// 10 fractional digits, so a BigInt of 1e-10 units holds them exactly.

const SCALE = 10
const UNIT = 10n ** BigInt(SCALE)

/** Parses a non-negative or negative decimal text; null if it is not one. */
export function parseUnits(text: string | number | null | undefined): bigint | null {
  if (text === null || text === undefined) return null
  const s = String(text).trim()
  const m = /^(-)?(\d+)(?:\.(\d{0,10}))?$/.exec(s)
  if (!m) return null
  const frac = (m[3] ?? '').padEnd(SCALE, '0')
  const units = BigInt(m[2]) * UNIT + BigInt(frac || '0')
  return m[1] ? -units : units
}

/** The canonical text of a units value: no trailing zeros, no exponent. */
export function unitsToText(units: bigint): string {
  const neg = units < 0n
  const abs = neg ? -units : units
  const int = abs / UNIT
  let frac = (abs % UNIT).toString().padStart(SCALE, '0').replace(/0+$/, '')
  return `${neg ? '-' : ''}${int}${frac ? '.' + frac : ''}`
}

/** a − b, exactly. */
export function subtract(a: string, b: string): string {
  const x = parseUnits(a)
  const y = parseUnits(b)
  if (x === null || y === null) return '0'
  return unitsToText(x - y)
}

/** a + b, exactly. */
export function add(a: string, b: string): string {
  return unitsToText((parseUnits(a) ?? 0n) + (parseUnits(b) ?? 0n))
}

export function compare(a: string, b: string): number {
  const x = parseUnits(a) ?? 0n
  const y = parseUnits(b) ?? 0n
  return x < y ? -1 : x > y ? 1 : 0
}

/** Number of fractional digits the canonical text needs. */
export function scaleOf(text: string): number {
  const canonical = unitsToText(parseUnits(text) ?? 0n)
  const dot = canonical.indexOf('.')
  return dot < 0 ? 0 : canonical.length - dot - 1
}

/** usage / limit as a fraction (for bars only, so a float is fine). */
export function ratio(usage: string, limit: string): number {
  const u = parseUnits(usage) ?? 0n
  const l = parseUnits(limit) ?? 0n
  if (l <= 0n) return 1
  return Number((u * 10000n) / l) / 10000
}

/** Whether text is a valid USD amount for the API: ≥ 0, ≤ 10 fractional digits. */
export function isValidUsd(text: string): boolean {
  const u = parseUnits(text)
  return u !== null && u >= 0n
}
