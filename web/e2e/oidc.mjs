// The deployed sign-in, end to end: OpenID Connect authorization code + PKCE
// against a tiny issuer this test serves itself (discovery, an authorize
// endpoint that signs a fixed user in and redirects back with a code, a token
// endpoint that checks the PKCE verifier against the challenge, JWKS). The
// console gets config.json with that issuer, as `make deploy` writes it.
//
// The local stack's gateway plays the HTTP API's JWT authorizer with HS256 and
// its dev secret, so the issuer signs the access token with that secret (the
// API must accept what the console sends); the ID token is RS256, its key in
// the JWKS.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { createHash, createHmac, generateKeyPairSync, randomBytes, createSign, createVerify } from 'node:crypto'
import { startStack, launchBrowser } from './stack.mjs'

const CLIENT_ID = 'spendguard-console-e2e'
const USER = 'oidc-carol'
let stack, browser, issuer

const b64url = (buf) => Buffer.from(buf).toString('base64url')
const json64 = (v) => b64url(JSON.stringify(v))

function hs256(secret, claims) {
  const input = `${json64({ alg: 'HS256', typ: 'JWT' })}.${json64(claims)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

function rs256(privateKey, kid, claims) {
  const input = `${json64({ alg: 'RS256', typ: 'JWT', kid })}.${json64(claims)}`
  return `${input}.${createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url')}`
}

// The issuer: what it was asked, and the tokens it gave.
function startIssuer(consoleOrigin, secret) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const kid = 'e2e-key-1'
  const state = { requests: [], codes: new Map(), issued: [], refused: [] }
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, state.base)
    let body = ''
    for await (const chunk of req) body += chunk
    state.requests.push({ method: req.method, url: url.href, body })
    const cors = { 'access-control-allow-origin': consoleOrigin, 'access-control-allow-headers': 'content-type' }
    const send = (status, value, headers = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...cors, ...headers })
      res.end(JSON.stringify(value))
    }
    if (req.method === 'OPTIONS') return send(204, {})
    if (url.pathname === '/.well-known/openid-configuration') {
      return send(200, {
        issuer: state.base,
        authorization_endpoint: `${state.base}/authorize`,
        token_endpoint: `${state.base}/token`,
        jwks_uri: `${state.base}/jwks`,
        response_types_supported: ['code'],
        grant_types_supported: ['authorization_code'],
        code_challenge_methods_supported: ['S256'],
        id_token_signing_alg_values_supported: ['RS256'],
        subject_types_supported: ['public'],
      })
    }
    if (url.pathname === '/jwks') {
      return send(200, { keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }] })
    }
    if (url.pathname === '/authorize' && req.method === 'GET') {
      const q = url.searchParams
      const redirect = q.get('redirect_uri')
      const ok =
        q.get('response_type') === 'code' &&
        q.get('client_id') === CLIENT_ID &&
        redirect === `${consoleOrigin}/callback` &&
        q.get('code_challenge_method') === 'S256' &&
        /^[A-Za-z0-9_-]{43}$/.test(q.get('code_challenge') ?? '') &&
        q.get('state')
      if (!ok) {
        state.refused.push(`authorize: ${url.search}`)
        return send(400, { error: 'invalid_request' })
      }
      // A real issuer asks the user to sign in here; this one signs USER in.
      const code = b64url(randomBytes(24))
      state.codes.set(code, { challenge: q.get('code_challenge'), redirect, scope: q.get('scope') })
      const back = new URL(redirect)
      back.searchParams.set('code', code)
      back.searchParams.set('state', q.get('state'))
      res.writeHead(302, { location: back.href })
      return res.end()
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      const f = new URLSearchParams(body)
      const grant = state.codes.get(f.get('code') ?? '')
      // One use per code.
      state.codes.delete(f.get('code') ?? '')
      const verifier = f.get('code_verifier') ?? ''
      const problem = !grant
        ? 'unknown or used code'
        : f.get('grant_type') !== 'authorization_code'
          ? 'grant_type'
          : f.get('client_id') !== CLIENT_ID
            ? 'client_id'
            : f.get('redirect_uri') !== grant.redirect
              ? 'redirect_uri'
              : !/^[A-Za-z0-9._~-]{43,128}$/.test(verifier)
                ? 'verifier format'
                : createHash('sha256').update(verifier).digest('base64url') !== grant.challenge
                  ? 'PKCE verifier does not match the challenge'
                  : null
      if (problem) {
        state.refused.push(`token: ${problem}`)
        return send(400, { error: 'invalid_grant', error_description: problem })
      }
      const now = Math.floor(Date.now() / 1000)
      const common = { iss: state.base, sub: USER, iat: now, exp: now + 3600, 'cognito:groups': ['admin'] }
      const tokens = {
        token_type: 'Bearer',
        expires_in: 3600,
        access_token: hs256(secret, { ...common, client_id: CLIENT_ID, token_use: 'access', scope: grant.scope }),
        id_token: rs256(privateKey, kid, { ...common, aud: CLIENT_ID, token_use: 'id' }),
      }
      state.issued.push(tokens)
      return send(200, tokens, { 'cache-control': 'no-store' })
    }
    send(404, { error: 'not_found' })
  })
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () => {
      state.base = `http://127.0.0.1:${server.address().port}`
      ok({ state, close: () => new Promise((r) => server.close(r)), publicKey })
    }),
  )
}

async function consolePage() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: 'en-US' })
  // config.json beside the bundle names the issuer, as `make deploy` writes it.
  await ctx.route(`${stack.base}/config.json`, async (route) => {
    const local = await (await route.fetch()).json()
    await route.fulfill({ json: { ...local, issuer: issuer.state.base, client_id: CLIENT_ID, scopes: 'openid' } })
  })
  const page = await ctx.newPage()
  page.setDefaultTimeout(10_000)
  const seen = { urls: [], requests: [] }
  page.on('framenavigated', (f) => seen.urls.push(f.url()))
  page.on('request', (r) => seen.requests.push({ url: r.url(), headers: r.headers() }))
  return { page, seen }
}

before(async () => {
  stack = await startStack()
  browser = await launchBrowser()
  issuer = await startIssuer(stack.base, stack.secret)
})

after(async () => {
  await browser?.close()
  await issuer?.close()
  await stack?.stop()
})

test('OIDC sign-in: authorization code + PKCE, tokens never in a URL', async () => {
  const { page, seen } = await consolePage()
  await page.goto(`${stack.base}/admin/users`)
  await page.waitForURL(/\/sign-in\?next=/)
  await page.getByTestId('oidc-sign-in').click()
  // Through the issuer's authorize endpoint and /callback, back where we were.
  await page.waitForURL(`${stack.base}/admin/users`)
  assert.equal(await page.getByTestId('who').innerText(), `Signed in as ${USER} (admin)`)
  assert.deepEqual(issuer.state.refused, [])
  assert.equal(issuer.state.issued.length, 1)
  const { access_token, id_token } = issuer.state.issued[0]

  // The authorize request carried the S256 challenge, never the verifier.
  const authorize = issuer.state.requests.find((r) => new URL(r.url).pathname === '/authorize')
  const a = new URL(authorize.url).searchParams
  const exchange = issuer.state.requests.find((r) => new URL(r.url).pathname === '/token')
  const verifier = new URLSearchParams(exchange.body).get('code_verifier')
  assert.equal(a.get('code_challenge'), createHash('sha256').update(verifier).digest('base64url'))
  assert.ok(!authorize.url.includes(verifier))
  // The code came back to /callback and left the address bar at once.
  assert.ok(seen.urls.some((u) => u.startsWith(`${stack.base}/callback?code=`)))
  assert.ok(!(await page.evaluate(() => location.href)).includes('code='))

  // The console calls the API with the access token, in a header only.
  await page.getByTestId('open-user-id').fill(USER)
  await page.getByTestId('open-user').click()
  await page.getByTestId('manage-quotas').waitFor()
  const api = seen.requests.filter((r) => r.url.startsWith(`${stack.base}/v1/`))
  assert.ok(api.length > 0)
  assert.ok(api.every((r) => r.headers.authorization === `Bearer ${access_token}`))
  // No URL the page went to or requested holds a token; only sessionStorage does.
  for (const t of [access_token, id_token, ...access_token.split('.'), ...id_token.split('.')]) {
    for (const u of [...seen.urls, ...seen.requests.map((r) => r.url)]) assert.ok(!u.includes(t), u)
  }
  const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('spendguard.session'), local: JSON.stringify(localStorage) }))
  assert.equal(JSON.parse(stored.session).token, access_token)
  assert.ok(!stored.local.includes(access_token))
  assert.equal(await page.evaluate(() => sessionStorage.getItem('spendguard.pkce')), null, 'the verifier is spent')

  // The ID token verifies against the issuer's JWKS (what an authorizer checks).
  const [h, p, s] = id_token.split('.')
  assert.ok(createVerify('RSA-SHA256').update(`${h}.${p}`).verify(issuer.publicKey, Buffer.from(s, 'base64url')))
  await page.context().close()
})

test('OIDC sign-in: a callback whose state was not issued here signs nobody in', async () => {
  const { page } = await consolePage()
  await page.goto(`${stack.base}/sign-in`)
  await page.getByTestId('oidc-sign-in').waitFor()
  // A code from someone else's sign-in (login CSRF): no state of ours matches.
  const before = issuer.state.requests.length
  await page.goto(`${stack.base}/callback?code=stolen&state=forged`)
  await page.getByRole('alert').waitFor()
  assert.match(await page.getByRole('alert').innerText(), /sign-in failed/i)
  assert.equal(await page.evaluate(() => sessionStorage.getItem('spendguard.session')), null)
  assert.ok(!(await page.evaluate(() => location.href)).includes('stolen'))
  // The code was never sent to the token endpoint.
  assert.ok(issuer.state.requests.slice(before).every((r) => new URL(r.url).pathname !== '/token'))
  await page.context().close()
})
