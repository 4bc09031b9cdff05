// Composables shared by the pages: the API client, locale-bound formatters,
// error sentences, and a cursor pager.
import { computed, ref, shallowRef } from 'vue'
import { useI18n } from 'vue-i18n'
import { useRouter } from 'vue-router'
import { Client, errorKey, type Page } from './api'
import { config } from './config'
import { signOut, token } from './auth'
import * as f from './format'

let client: Client | null = null
let onUnauthorized: () => void = () => {}

export function setUnauthorizedHandler(h: () => void) {
  onUnauthorized = h
}

export function api(): Client {
  if (!client) {
    client = new Client(config().api_base_url, token, () => {
      signOut()
      onUnauthorized()
    })
  }
  return client
}

export function useFmt() {
  const { locale } = useI18n()
  const l = () => locale.value as f.Locale
  return {
    usd: (v: string | null | undefined) => f.formatUsd(v, l()),
    credits: (v: number | string | null | undefined) => f.formatCredits(v, l()),
    signed: (v: number) => f.formatSignedCredits(v, l()),
    dateTime: (v: string | null | undefined, tz?: string) => f.formatDateTime(v, l(), tz),
    duration: (s: number) => f.formatDuration(s, l()),
    percent: (v: number) => f.formatPercent(v, l()),
  }
}

/** A message for any error, in the current language. */
export function useErrorText() {
  const { t } = useI18n()
  return (err: unknown) => {
    const { key, params } = errorKey(err)
    return t(key, params)
  }
}

/** Runs an async action with busy/error state. */
export function useAction() {
  const busy = ref(false)
  const error = shallowRef<unknown>(null)
  const errorText = useErrorText()
  const message = computed(() => (error.value ? errorText(error.value) : ''))
  async function run<T>(fn: () => Promise<T>): Promise<T | undefined> {
    busy.value = true
    error.value = null
    try {
      return await fn()
    } catch (e) {
      error.value = e
      return undefined
    } finally {
      busy.value = false
    }
  }
  return { busy, error, message, run }
}

/** Cursor paging over a list route: first page, next page, page number. */
export function usePager<T>(fetchPage: (cursor: string | null) => Promise<Page<T>>) {
  const items = shallowRef<T[]>([])
  const next = ref<string | null>(null)
  const page = ref(1)
  const action = useAction()
  async function load(cursor: string | null, n: number) {
    const res = await action.run(() => fetchPage(cursor))
    if (res) {
      items.value = res.items
      next.value = res.next_cursor
      page.value = n
    }
  }
  return {
    items,
    next,
    page,
    ...action,
    first: () => load(null, 1),
    loadNext: () => (next.value ? load(next.value, page.value + 1) : Promise.resolve()),
  }
}

export function useSignOut() {
  const router = useRouter()
  return () => {
    signOut()
    router.push('/sign-in')
  }
}
