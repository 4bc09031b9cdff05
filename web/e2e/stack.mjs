// Starts the local stack (target/debug/spendguard-local) on a free port with a
// temporary data directory and a secret of its own, serving web/dist; and
// Debian's Chromium through playwright-core.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer()
    s.once('error', fail)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => ok(port))
    })
  })
}

export async function startStack({ tz = 'Asia/Shanghai' } = {}) {
  // Where cargo put it: CARGO_TARGET_DIR (relative to the workspace) or target/.
  const target = resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target')
  const bin = process.env.SPENDGUARD_LOCAL_BIN ?? join(target, 'debug/spendguard-local')
  if (!existsSync(bin)) throw new Error(`${bin} missing: cargo build -p spendguard-local`)
  const dist = join(ROOT, 'web/dist')
  if (!existsSync(join(dist, 'index.html'))) throw new Error('web/dist missing: npm run build')
  const work = mkdtempSync(join(tmpdir(), 'spendguard-e2e-'))
  const port = await freePort()
  const env = { ...process.env }
  const secret = `e2e-${process.pid}-${Date.now()}`
  for (const k of ['AWS_ENDPOINT_URL_DYNAMODB', 'AWS_ENDPOINT_URL', 'SPENDGUARD_PLATFORMS', 'SPENDGUARD_TABLE', 'SPENDGUARD_WEBHOOK_URL'])
    delete env[k]
  Object.assign(env, {
    SPENDGUARD_LOCAL_ADDR: `127.0.0.1:${port}`,
    SPENDGUARD_ENGINE_PORT: '0',
    SPENDGUARD_LOCAL_DATA: join(work, 'data'),
    SPENDGUARD_CONSOLE_DIR: dist,
    SPENDGUARD_DEV_JWT_SECRET: secret,
    SPENDGUARD_TZ: tz,
    // Alerts at 50 / 80 / 100 % of a limit (the default) and below 100 credits.
    SPENDGUARD_ALERT_THRESHOLDS: '50 80 100',
    SPENDGUARD_LOW_BALANCE_CREDITS: '100',
    RUST_LOG: 'warn',
  })
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  child.stdout.on('data', (d) => (log += d))
  child.stderr.on('data', (d) => (log += d))
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`${base}/config.json`)
      if (r.ok) break
    } catch {
      /* not up yet */
    }
    if (child.exitCode !== null || i > 200) {
      throw new Error(`the local stack did not start:\n${log}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    base,
    // The secret the stack's gateway verifies HS256 tokens with (its JWT authorizer).
    secret,
    log: () => log,
    async stop() {
      child.kill('SIGTERM')
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)))
      rmSync(work, { recursive: true, force: true })
    },
  }
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}
