import { onScopeDispose, ref } from 'vue'

/** The current time, refreshed every 15 s while a component uses it. */
export function useNow(intervalMs = 15000) {
  const now = ref(Date.now())
  const id = setInterval(() => (now.value = Date.now()), intervalMs)
  onScopeDispose(() => clearInterval(id))
  return now
}
