// End-to-end tests of the console in Debian's Chromium (playwright-core)
// against a local stack of their own. One scenario, in order:
//   admin sets system and source defaults → inits a user and caps a window →
//   a usage event through the Invoke API moves the user's bar → the user
//   redeems a code and sees balance and ledger change → an exhausted window
//   shows as exhausted with its reset time → the user sees the alerts of that
//   crossing and what pending reservations hold → admin sees the user's holds
//   and alerts, lists the pending reservations and voids one, looks a finished
//   one up → admin sees the user's subscription, adjusts credits (check,
//   preview, apply, force), and the low-balance alert follows →
//   the language switch changes every visible label.
// Screenshots of the main pages in both languages go to docs/screenshots/
// when SPENDGUARD_SCREENSHOTS=docs (make screenshots), else to e2e/.tmp/.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { join } from 'node:path'
import { ROOT, startStack, launchBrowser } from './stack.mjs'

const SHOTS =
  process.env.SPENDGUARD_SCREENSHOTS === 'docs' ? join(ROOT, 'docs/screenshots') : join(ROOT, 'web/e2e/.tmp/screenshots')
mkdirSync(SHOTS, { recursive: true })
const USER = 'alice'
let stack, browser, admin, alice
let codes = []
const pageErrors = []

async function newPage(locale = 'en-US') {
  const ctx = await browser.newContext({
    viewport: { width: 1280, height: 860 },
    locale,
    timezoneId: 'Europe/Berlin',
  })
  const page = await ctx.newPage()
  page.setDefaultTimeout(10_000)
  page.on('pageerror', (e) => pageErrors.push(e.message))
  return page
}

async function signIn(page, user, role) {
  await page.goto(`${stack.base}/sign-in`)
  await page.getByTestId('user-id').fill(user)
  if (role === 'admin') await page.getByTestId('role-admin').check()
  await page.getByTestId('sign-in').click()
  await page.waitForURL(/\/(me|admin)/)
}

async function shot(page, name, { fullPage = true } = {}) {
  await page.evaluate(() => document.activeElement?.blur?.())
  const lang = await page.evaluate(() => document.documentElement.lang)
  await page.screenshot({ path: join(SHOTS, `${lang}-${name}.png`), fullPage })
}

// A usage event through the Lambda Invoke API, as SQS would deliver it.
async function usage(platform, cost) {
  const id = `e2e-${platform}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`
  const body = JSON.stringify({
    event_id: id,
    user_id: USER,
    platform,
    cost_usd: cost,
    occurred_at: new Date().toISOString(),
  })
  const res = await fetch(`${stack.base}/2015-03-31/functions/usage-ingest/invocations`, {
    method: 'POST',
    body: JSON.stringify({
      Records: [{ messageId: id, receiptHandle: 'r', body, attributes: {}, messageAttributes: {}, eventSource: 'aws:sqs' }],
    }),
  })
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { batchItemFailures: [] })
}

// A dev token from the local stack's sign-in route, as the console gets one.
async function devToken(user, role) {
  const res = await fetch(`${stack.base}/local/sign-in`, {
    method: 'POST',
    body: JSON.stringify({ user_id: user, role }),
  })
  assert.equal(res.status, 200)
  return (await res.json()).token
}

// A JSON request to the public API with a token; the parsed answer.
async function api(method, path, token, body) {
  const res = await fetch(`${stack.base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${await res.clone().text()}`)
  return res.json()
}

// A reservation through the public API, as a forwarding service makes one.
async function reserve(platform, estimate) {
  const res = await fetch(`${stack.base}/v1/quota/reservations`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${await devToken('gateway', 'admin')}`,
      'content-type': 'application/json',
      'idempotency-key': `e2e-${Date.now()}-${Math.random().toString(36).slice(2)}`,
    },
    body: JSON.stringify({ user_id: USER, platform, estimate_usd: estimate, ttl_seconds: 3600 }),
  })
  assert.equal(res.status, 201, await res.clone().text())
  return res.json()
}

// Alerts come from the table's stream, a moment after the write: show the
// list again until `n` rows of `type` are there.
async function waitForAlerts(page, type, n) {
  const rows = page.getByTestId('alerts').locator(`tbody tr[data-type=${type}]`)
  for (let i = 0; i < 50 && (await rows.count()) < n; i++) {
    await page.waitForTimeout(200)
    await page.getByTestId('alerts-refresh').click()
    await page.waitForLoadState('networkidle')
  }
  assert.equal(await rows.count(), n, `${type} alerts`)
  return rows
}

async function setLimit(page, testid, mode, amount) {
  const cell = page.getByTestId(testid)
  await cell.locator('[data-part=mode]').selectOption(mode)
  if (amount !== undefined) await cell.locator('[data-part=amount]').fill(amount)
}

const win = (page, platform, w) => page.getByTestId(`win-${platform}-${w}`)

before(async () => {
  stack = await startStack()
  browser = await launchBrowser()
  admin = await newPage()
  alice = await newPage()
})

after(async () => {
  await browser?.close()
  await stack?.stop()
})

test('the bundle stays lean: ≤ 200 KB of JavaScript gzipped, split per page', () => {
  const dir = join(ROOT, 'web/dist/assets')
  const js = readdirSync(dir).filter((f) => f.endsWith('.js'))
  const total = js.reduce((n, f) => n + gzipSync(readFileSync(join(dir, f)), { level: 9 }).length, 0)
  assert.ok(total <= 200 * 1024, `${total} bytes gzipped`)
  assert.ok(js.length >= 8, 'pages are separate chunks')
})

test('admin sets the system and a source default, with a preview', async () => {
  await signIn(admin, 'root', 'admin')
  await admin.goto(`${stack.base}/admin/defaults`)
  await setLimit(admin, 'limit-openai-daily', 'cap', '5')
  await setLimit(admin, 'limit-antigravity-monthly', 'disabled')
  await admin.getByTestId('preview').click()
  const changes = admin.getByTestId('changes')
  await changes.getByText('openai · Daily').waitFor()
  assert.match(await changes.innerText(), /Unlimited\s*→\s*\$5\.00/)
  assert.match(await changes.innerText(), /antigravity · Monthly: Unlimited\s*→\s*Disabled/)
  await shot(admin, 'admin-defaults')
  await admin.getByTestId('save').click()
  await admin.getByTestId('saved').waitFor()

  await admin.getByTestId('scope-github').click()
  await admin.getByTestId('not-set').waitFor()
  await setLimit(admin, 'limit-openai-weekly', 'cap', '20')
  await admin.getByTestId('preview').click()
  assert.match(await admin.getByTestId('changes').innerText(), /Use system\s*→\s*\$20\.00/)
  await admin.getByTestId('save').click()
  await admin.getByTestId('saved').waitFor()
  // Back from the API: the whole-replace took.
  await admin.getByTestId('scope-system').click()
  assert.equal(await admin.getByTestId('limit-openai-daily').locator('[data-part=amount]').inputValue(), '5')
})

test('admin inits a user from a source and caps one window', async () => {
  await admin.goto(`${stack.base}/admin/users`)
  await admin.getByTestId('open-user-id').fill(USER)
  await admin.getByTestId('open-user').click()
  await admin.waitForURL(`**/admin/users/${USER}`)
  await admin.getByTestId('manage-quotas').click()
  await admin.getByTestId('init-source').selectOption('github')
  await admin.getByTestId('init').click()
  await admin.getByTestId('modal-notice').waitFor()
  // system daily 5 (github leaves it to the system), github weekly 20
  assert.equal(await admin.getByTestId('ulimit-openai-daily').locator('[data-part=amount]').inputValue(), '5')
  assert.equal(await admin.getByTestId('ulimit-openai-weekly').locator('[data-part=amount]').inputValue(), '20')
  assert.equal(await admin.getByTestId('ulimit-antigravity-monthly').locator('[data-part=mode]').inputValue(), 'disabled')
  await setLimit(admin, 'ulimit-gemini-daily', 'cap', '1')
  await admin.getByTestId('save-limits').click()
  await admin.getByText('Limits saved.').waitFor()
  await shot(admin, 'admin-quota-modal', { fullPage: false })
  await admin.keyboard.press('Escape')
  await win(admin, 'gemini', 'daily').getByText('of $1.00').waitFor()
})

test('a usage event through the Invoke API moves the user’s bar', async () => {
  await signIn(alice, USER, 'user')
  await alice.goto(`${stack.base}/me`)
  const bar = win(alice, 'gemini', 'daily').getByRole('meter')
  await bar.waitFor()
  assert.equal(await bar.getAttribute('aria-valuenow'), '0')
  await usage('gemini', '0.25')
  await alice.getByTestId('refresh').click()
  await win(alice, 'gemini', 'daily').getByText('$0.25 of $1.00').waitFor()
  assert.equal(await bar.getAttribute('aria-valuenow'), '25')
  assert.match(await win(alice, 'gemini', 'daily').getByTestId('remaining').innerText(), /\$0\.75 left/)
  // The zone the windows align in is labelled.
  assert.match(await alice.getByTestId('zone').innerText(), /Asia\/Shanghai/)
})

test('an exhausted window shows as exhausted with its reset time', async () => {
  await usage('openai', '5')
  await alice.getByTestId('refresh').click()
  const w = win(alice, 'openai', 'daily')
  await w.getByText('$5.00 of $5.00').waitFor()
  assert.equal(await w.getAttribute('data-state'), 'exhausted')
  assert.equal(await w.getByTestId('state').innerText(), 'Exhausted')
  assert.match(await w.getByTestId('resets').innerText(), /^Resets in \d+ (hr|min).* · \w{3} \d+, \d{4}, \d+:00 (AM|PM)$/)
  assert.equal(await win(alice, 'antigravity', 'monthly').getAttribute('data-state'), 'disabled')
  assert.equal(await win(alice, 'anthropic', 'daily').getAttribute('data-state'), 'unlimited')
})

let held = []
test('the dashboard shows own alerts and what pending reservations hold', async () => {
  // $5 of $5 crossed 50, 80 and 100 % of openai's daily cap in one write.
  const rows = await waitForAlerts(alice, 'quota_threshold', 3)
  assert.deepEqual(
    await rows.locator('td:nth-child(3)').allInnerTexts(),
    [100, 80, 50].map((p) => `openai · Daily: ${p}% of the $5.00 limit reached ($5.00 spent)`),
  )
  assert.equal(await rows.first().locator('.badge').innerText(), 'Quota threshold')
  // The window's start: midnight in the quota zone, labelled with it.
  assert.match(await rows.first().locator('td:nth-child(4)').innerText(), /, 12:00 AM \(Asia\/Shanghai\)$/)

  held = [await reserve('gemini', '0.3'), await reserve('gemini', '0.2')]
  await alice.getByTestId('refresh').click()
  const g = win(alice, 'gemini', 'daily')
  await g.getByTestId('reserved').getByText('Reserved $0.50').waitFor()
  // remaining = limit − usage − reserved
  assert.equal(await g.getByTestId('remaining').innerText(), '$0.25 left')
  assert.match(await g.getByRole('meter').getAttribute('aria-valuetext'), /^25%, Reserved \$0\.50$/)
  assert.equal(await g.getAttribute('data-state'), 'ok') // 75 % committed
  await shot(alice, 'dashboard')
})

test('admin sees a user’s holds, pending reservations and alerts, and voids one', async () => {
  await admin.goto(`${stack.base}/admin/users/${USER}`)
  await admin.getByTestId('held-gemini-daily').getByText('$0.50').waitFor()
  assert.equal(await admin.getByTestId('held-gemini-monthly').innerText(), '$0.50')
  await waitForAlerts(admin, 'quota_threshold', 3)

  // The pending ones, soonest expiry first (the same TTL: the older first).
  const rows = admin.getByTestId('pending').locator('tbody tr[data-id]')
  await rows.first().waitFor()
  assert.deepEqual(
    await rows.evaluateAll((rs) => rs.map((r) => r.dataset.id)),
    held.map((r) => r.reservation_id),
  )
  assert.match(await rows.first().innerText(), /gemini\s+\$0\.30\s+0\s/)

  await admin.getByTestId('reservation-id').fill('no-such-reservation')
  await admin.getByTestId('reservation-lookup').click()
  assert.equal(await admin.getByTestId('reservation-error').innerText(), 'No reservation has this id.')

  // Voiding from the list is a deliberate second step.
  await rows.first().getByTestId('pending-void').click()
  assert.match(await admin.getByTestId('void-confirm').innerText(), /release the \$0\.30 it holds on gemini for alice/)
  await admin.getByTestId('void-yes').click()
  await admin.getByTestId('reservation-notice').getByText('Voided: the hold is released.').waitFor()
  await admin.getByTestId('pending').locator(`tr[data-id="${held[0].reservation_id}"]`).waitFor({ state: 'detached' })
  assert.deepEqual(await rows.evaluateAll((rs) => rs.map((r) => r.dataset.id)), [held[1].reservation_id])
  await admin.getByTestId('held-gemini-daily').getByText('$0.20').waitFor()

  // A finished one is not listed: it is looked up by id.
  await admin.getByTestId('reservation-id').fill(held[0].reservation_id)
  await admin.getByTestId('reservation-lookup').click()
  assert.equal(await admin.getByTestId('reservation-status').innerText(), 'Voided')
  assert.match(await admin.getByTestId('reservation').innerText(), /Estimate\s+\$0\.30/)
  assert.equal(await admin.getByTestId('reservation-void').count(), 0)

  await alice.getByTestId('refresh').click()
  await win(alice, 'gemini', 'daily').getByTestId('reserved').getByText('Reserved $0.20').waitFor()
  assert.equal(await win(alice, 'gemini', 'daily').getByTestId('remaining').innerText(), '$0.55 left')
})

test('admin creates a batch of codes; the user redeems one and sees balance and ledger change', async () => {
  await admin.goto(`${stack.base}/admin/codes`)
  await admin.getByTestId('code-count').fill('3')
  await admin.getByTestId('code-prefix').fill('E2E')
  await admin.getByTestId('code-credits').fill('150')
  await admin.getByTestId('create-codes').click()
  codes = (await admin.getByTestId('batch-codes').inputValue()).split('\n')
  assert.equal(codes.length, 3)
  assert.ok(codes.every((c) => c.startsWith('E2E')))
  await admin.getByTestId('codes').getByText(codes[0]).waitFor()
  await shot(admin, 'admin-codes')

  await alice.goto(`${stack.base}/me/credits`)
  assert.equal(await alice.getByTestId('available').innerText(), '0')
  await alice.goto(`${stack.base}/me/redeem`)
  await alice.getByTestId('code').fill('NO-SUCH-CODE')
  await alice.getByTestId('redeem').click()
  assert.equal(await alice.getByTestId('redeem-error').innerText(), 'This code does not exist. Check it for typos.')
  await alice.getByTestId('code').fill(codes[0].toLowerCase())
  await alice.getByTestId('redeem').click()
  assert.match(await alice.getByTestId('redeem-ok').innerText(), /150 credits added\. Balance: 150\./)
  await alice.getByTestId('code').fill(codes[0])
  await alice.getByTestId('redeem').click()
  assert.equal(await alice.getByTestId('redeem-error').innerText(), 'You have already redeemed this code.')
  await shot(alice, 'redeem')

  await alice.goto(`${stack.base}/me/credits`)
  await alice.getByTestId('available').getByText('150').waitFor()
  // The ledger loads on its own request: wait for the entry, then read it.
  await alice.getByTestId('ledger').getByText('Redemption', { exact: true }).waitFor()
  const row = alice.getByTestId('ledger').locator('tbody tr').first()
  assert.match(await row.innerText(), /^1\s+Redemption\s+\+150\s+0\s+150/)
  await shot(alice, 'credits')
})

test('admin adjusts credits: check, preview, apply, then force as a second step', async () => {
  // A subscription of the user's, for the admin's view of it below.
  const plan = await api('POST', '/v1/admin/redemption-codes', await devToken('root', 'admin'), {
    count: 1,
    max_uses: 1,
    subscription: { plan_id: 'pro', unit: 'month', quantity: 1 },
  })
  const sub = await api('POST', '/v1/me/redemptions', await devToken(USER, 'user'), { code: plan.codes[0] })
  await admin.goto(`${stack.base}/admin/users/${USER}`)
  const subs = admin.getByTestId('subscriptions').locator('tbody tr')
  await subs.getByText('pro').waitFor()
  assert.equal(await subs.count(), 1)
  // The expiry the redemption answered, in the browser's zone.
  const expires = await admin.evaluate(
    (iso) => new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso)),
    sub.subscription.expires_at,
  )
  assert.equal(await subs.locator('td').nth(1).innerText(), expires)
  assert.equal(await subs.locator('.badge').innerText(), 'Active')
  await admin.getByTestId('user-available').getByText('150').waitFor()
  await admin.getByTestId('adjust-check').click()
  await admin.getByTestId('adjust-outcome').getByText('Current balance: 150.').waitFor()
  await admin.getByTestId('adjust-amount').fill('-200')
  await admin.getByTestId('adjust-reason').fill('e2e correction')
  assert.ok(await admin.getByTestId('adjust-apply').isDisabled(), 'apply waits for a preview')
  await admin.getByTestId('adjust-preview').click()
  // A deduction below zero is refused until force is chosen, deliberately.
  await admin.getByText('Not enough credits: this would take the balance below zero.').waitFor()
  assert.ok(await admin.getByTestId('adjust-apply').isDisabled())
  assert.ok(await admin.getByTestId('force-preview').isDisabled(), 'force needs the confirmation')
  await admin.getByTestId('force-ok').check()
  await admin.getByTestId('force-preview').click()
  await admin.getByTestId('adjust-outcome').getByText('Balance 150 → -50 (change -200).').waitFor()
  assert.equal(await admin.getByTestId('adjust-apply').innerText(), 'Force apply')
  await admin.getByTestId('adjust-apply').click()
  await admin.getByTestId('adjust-outcome').getByText('Applied: balance 150 → -50.').waitFor()
  await admin.getByTestId('user-available').getByText('-50').waitFor()
  // 150 → -50 fell below the low-balance mark (100): one alert.
  const low = await waitForAlerts(admin, 'low_balance', 1)
  assert.equal(await low.locator('td:nth-child(3)').innerText(), 'Credit balance fell to -50, below 100')
  // The screenshot shows a finished reservation beside the pending one.
  await admin.getByTestId('reservation-id').fill(held[0].reservation_id)
  await admin.getByTestId('reservation-lookup').click()
  await admin.getByTestId('reservation-status').getByText('Voided').waitFor()
  await shot(admin, 'admin-user')

  await admin.goto(`${stack.base}/admin/alerts`)
  await admin.getByTestId('alerts-user').fill(USER)
  await admin.getByTestId('alerts-type').selectOption('low_balance')
  await admin.getByTestId('alerts-refresh').click()
  await admin.waitForLoadState('networkidle')
  const rows = admin.getByTestId('alerts').locator('tbody tr')
  assert.equal(await rows.count(), 1)
  assert.match(await rows.first().innerText(), /Low balance\s+alice\s+Credit balance fell to -50, below 100/)
  await admin.getByTestId('alerts-type').selectOption('')
  await admin.getByTestId('alerts-refresh').click()
  await waitForAlerts(admin, 'quota_threshold', 3)
  await shot(admin, 'admin-alerts')
  await admin.goto(`${stack.base}/admin/audit`)
  await admin.getByTestId('audit').getByText('Adjust credits').first().waitFor()
  await shot(admin, 'admin-audit')
})

// Text of every visible label-like element, in document order.
const labels = (page) =>
  page.$$eval('h1, h2, h3, th[scope=col], label > span, legend, button, nav a, .badge, .win-foot span, p', (els) =>
    els
      .filter((e) => e.offsetParent !== null && !e.closest('[data-i18n-skip]'))
      .map((e) => e.innerText.trim())
      .filter(Boolean),
  )

test('the language switch changes every visible label, and is kept', async () => {
  const pages = [
    [alice, '/me', 'dashboard'],
    [alice, '/me/credits', 'credits'],
    [alice, '/me/redeem', 'redeem'],
    [admin, '/admin/defaults', 'admin-defaults'],
    [admin, `/admin/users/${USER}`, 'admin-user'],
    [admin, '/admin/codes', 'admin-codes'],
    [admin, '/admin/alerts', 'admin-alerts'],
    [admin, '/admin/audit', 'admin-audit'],
  ]
  // Data, not copy: platform names, ids, codes, numbers.
  const data = /^(anthropic|openai|gemini|antigravity|root|alice|LINUX DO|OIDC|GitHub|Google|E2E[\w-]*|[\d\s.,:$+\-−/→()%]*)$/i
  for (const [page, path] of pages) {
    await page.goto(`${stack.base}${path}`)
    await page.locator('h1').waitFor()
    await page.waitForLoadState('networkidle')
    const en = await labels(page)
    await page.getByTestId('lang').selectOption('zh-CN')
    await page.locator('html[lang="zh-CN"]').waitFor()
    const zh = await labels(page)
    assert.equal(zh.length, en.length, `${path}: same elements`)
    const unchanged = en.filter((t, i) => t === zh[i] && !data.test(t))
    assert.deepEqual(unchanged, [], `${path}: labels left in English`)
    await page.getByTestId('lang').selectOption('en')
  }
  // Kept across visits (localStorage), then screenshots in Chinese.
  await alice.getByTestId('lang').selectOption('zh-CN')
  await admin.getByTestId('lang').selectOption('zh-CN')
  for (const [page, path, name] of pages) {
    await page.goto(`${stack.base}${path}`)
    await page.locator('html[lang="zh-CN"]').waitFor()
    await page.locator('h1').waitFor()
    await page.waitForLoadState('networkidle')
    if (name === 'dashboard') {
      assert.equal(await win(page, 'openai', 'daily').getByTestId('state').innerText(), '已用尽')
      assert.equal(await win(page, 'gemini', 'daily').getByTestId('reserved').innerText(), '预留 $0.20')
      const first = page.getByTestId('alerts').locator('tbody tr[data-type=quota_threshold]').first()
      assert.match(await first.innerText(), /配额阈值\s+openai · 每日：已达限额 \$5\.00 的 100%（已花费 \$5\.00）/)
    }
    if (name === 'admin-user') {
      const low = page.getByTestId('alerts').locator('tbody tr[data-type=low_balance] td:nth-child(3)')
      assert.equal(await low.innerText(), '积分余额降至 -50，低于 100')
    }
    await shot(page, name)
  }
  await admin.goto(`${stack.base}/admin/users/${USER}`)
  await admin.getByTestId('manage-quotas').click()
  await admin.getByTestId('quota-modal').waitFor()
  await shot(admin, 'admin-quota-modal', { fullPage: false })
  await admin.keyboard.press('Escape')
  assert.deepEqual(pageErrors, [])
})
