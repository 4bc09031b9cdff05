// Shapes of the API's answers (docs/openapi.yaml).
export type WindowName = 'daily' | 'weekly' | 'monthly'
export const WINDOWS: WindowName[] = ['daily', 'weekly', 'monthly']

export interface QuotaWindow {
  limit_usd: string | null
  usage_usd: string
  window_start: string
  resets_at: string
  reserved_usd?: string
}
export interface PlatformQuota {
  platform: string
  daily: QuotaWindow
  weekly: QuotaWindow
  monthly: QuotaWindow
}
export interface UserQuotas {
  user_id: string
  quotas: PlatformQuota[]
}
export interface Limits {
  daily_limit_usd?: string | null
  weekly_limit_usd?: string | null
  monthly_limit_usd?: string | null
}
export type Defaults = Record<string, Limits>
export interface QuotaDefaults {
  system: Defaults
  sources: Record<string, Defaults | null>
}
export interface CreditAccount {
  user_id: string
  available: number
  total: number
  used: number
  updated_at: string | null
}
export interface LedgerEntry {
  id: string
  seq: number
  type: 'grant' | 'deduct' | 'consume' | 'redeem'
  amount: number
  balance_before: number
  balance_after: number
  category: string
  description: string
  created_at: string
}
export interface SubscriptionGrant {
  plan_id: string
  unit: 'day' | 'week' | 'month' | 'quarter' | 'half_year' | 'year'
  quantity: number
}
export interface Redemption {
  code: string
  user_id?: string
  credits_granted: number
  balance_after: number
  subscription: (SubscriptionGrant & { previous_expires_at: string | null; expires_at: string }) | null
  is_new: boolean
  redeemed_at: string
}
export interface Subscription {
  plan_id: string
  expires_at: string
  active?: boolean
}
export interface RedemptionCode {
  code: string
  batch_id: string
  batch_name?: string | null
  credits?: number
  subscription?: SubscriptionGrant | null
  max_uses: number
  used_count: number
  enabled: boolean
  expires_at: string | null
  status: 'active' | 'disabled' | 'expired' | 'exhausted'
  created_at?: string
}
export interface CodeBatch {
  batch_id: string
  codes: string[]
  batch_name?: string | null
  credits?: number
  subscription?: SubscriptionGrant | null
  max_uses?: number
  expires_at?: string | null
}
export interface AuditEntry {
  id: string
  actor: string
  action: string
  target_user: string | null
  source_ip: string | null
  user_agent: string | null
  success: boolean
  details: Record<string, unknown>
  created_at: string
}
export type AlertType = 'quota_threshold' | 'low_balance'
export const ALERT_TYPES: AlertType[] = ['quota_threshold', 'low_balance']
/** A spend alert; fields that do not apply to its type are absent. */
export interface Alert {
  alert_id: string
  type: AlertType
  user_id: string
  platform?: string
  window?: WindowName
  window_start?: string
  threshold_percent?: number
  limit_usd?: string
  usage_usd?: string
  balance?: number
  low_balance_credits?: number
  occurred_at: string
}
export type ReservationStatus = 'pending' | 'settled' | 'voided' | 'expired'
export interface Reservation {
  reservation_id: string
  user_id: string
  platform: string
  estimate_usd: string
  credits: number
  status: ReservationStatus
  created_at: string
  expires_at: string
  settled_cost_usd: string | null
  overage_usd: string | null
  event_id: string | null
  request_id?: string | null
}
