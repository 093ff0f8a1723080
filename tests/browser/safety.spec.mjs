// Real-browser test of the page's safety parts (issue 14): the first-visit
// 18+ notice with the operator's rules, Report (menu of reasons and a
// note) and Block beside Next, and the banned message.
//
//   node tests/browser/safety.spec.mjs http://127.0.0.1:PORT http://127.0.0.1:ADMIN TOKEN
//
// The server runs with --trust-proxy 127.0.0.1, --rules-file and the admin
// door (tests/browser/run.sh); each browser context sends its own
// X-Forwarded-For, so the three strangers have three addresses although
// every packet stays on loopback. Screenshots go to
// tests/browser/screenshots/safety-*.png. Every wait is bounded; the last
// line is "N passed, M failed".
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, admin, token] = process.argv.slice(2).map((s) => (s || '').replace(/\/+$/, ''));
if (!/^https?:\/\//.test(base) || !/^https?:\/\//.test(admin) || !token) {
  console.error('usage: node tests/browser/safety.spec.mjs http://127.0.0.1:PORT http://127.0.0.1:ADMIN TOKEN');
  process.exit(2);
}
const WAIT = 10_000;
const shots = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
mkdirSync(shots, { recursive: true });

let passed = 0, failed = 0;
const pageErrors = [];
function finish(code) {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code ?? (failed ? 1 : 0));
}
setTimeout(() => { console.error('FAIL whole run timed out after 120 s'); failed++; finish(1); }, 120_000).unref();

const steps = [];
const step = (name, fn) => steps.push({ name, fn });
function assert(cond, msg) { if (!cond) throw new Error(msg); }
const waitStatus = (p, re, what) =>
  p.waitForFunction((src) => new RegExp(src, 'i').test(document.getElementById('status').textContent),
    re.source, { timeout: WAIT }).catch(async () => {
    throw new Error(`${what}: #status never matched ${re}; it says "${await p.textContent('#status')}"`);
  });
const waitSys = (p, re) =>
  p.waitForFunction((src) => [...document.querySelectorAll('#log .sys')].some((e) => new RegExp(src, 'i').test(e.textContent)),
    re.source, { timeout: WAIT });
async function adminGet(path) {
  const r = await fetch(admin + path, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(WAIT) });
  assert(r.status === 200, `GET ${path}: ${r.status}`);
  return r.json();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  timeout: 30_000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
async function stranger(name, addr, opts, agreed) {
  const ctx = await browser.newContext({ ...opts, extraHTTPHeaders: { 'X-Forwarded-For': addr } });
  if (agreed) await ctx.addInitScript(() => { try { localStorage.setItem('chat.agreed18', '1'); } catch (e) {} });
  const p = await ctx.newPage();
  p.setDefaultTimeout(WAIT);
  p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  return p;
}
const DESKTOP = { viewport: { width: 1280, height: 800 } };
const PHONE = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const a = await stranger('A', '198.51.100.1', DESKTOP, false);
let b = null, c = null;

step('first visit: the 18+ notice shows the operator\'s rules and blocks the chat until accepted', async () => {
  const r = await a.goto(base + '/', { timeout: WAIT, waitUntil: 'domcontentloaded' });
  assert(r && r.status() === 200, `GET / answered ${r && r.status()}`);
  await a.waitForSelector('#rulesDlg[open]', { timeout: WAIT });
  await a.waitForFunction(() => /Test rules: be excellent/.test(document.getElementById('rulesText').textContent), null, { timeout: WAIT });
  assert(/18 or older/.test(await a.textContent('#rulesDlg')), 'no 18+ sentence');
  assert(await a.isDisabled('#agreeBtn'), 'Start is enabled before agreeing');
  assert(!/looking/i.test(await a.textContent('#status')), 'the page connected before the rules were accepted');
  await a.screenshot({ path: join(shots, 'safety-rules.png') });
  await a.check('#agree');
  await a.click('#agreeBtn');
  await waitStatus(a, /looking for a stranger/, 'A');
  assert(!(await a.$('#rulesDlg[open]')), 'the notice stayed open');
});

step('the agreement is remembered: a reload goes straight to the chat', async () => {
  await a.reload({ waitUntil: 'domcontentloaded' });
  await waitStatus(a, /looking for a stranger/, 'A');
  assert(!(await a.$('#rulesDlg[open]')), 'the notice came back after a reload');
});

step('Report and Block sit beside Next, off until there is a stranger', async () => {
  for (const id of ['next', 'report', 'block']) assert(await a.isVisible('#' + id), `#${id} not visible`);
  assert(await a.isDisabled('#report') && await a.isDisabled('#block'), 'Report/Block enabled with nobody to report');
  b = await stranger('B', '198.51.100.2', PHONE, true);
  await b.goto(base + '/', { timeout: WAIT, waitUntil: 'domcontentloaded' });
  await waitStatus(a, /now chatting/, 'A');
  await waitStatus(b, /now chatting/, 'B');
  assert(await a.isEnabled('#report') && await a.isEnabled('#block'), 'Report/Block disabled in a chat');
  await b.fill('#input', 'buy cheap followers at spam.example');
  await b.press('#input', 'Enter');
  await a.waitForSelector('#log .msg.stranger', { timeout: WAIT });
  await b.screenshot({ path: join(shots, 'safety-phone-buttons.png') });
});

step('Report opens a menu of reasons with a note; sending it tells both sides', async () => {
  await a.click('#report');
  await a.waitForSelector('#reportDlg[open]', { timeout: WAIT });
  const reasons = await a.$$eval('#reportDlg input[name=reason]', (els) => els.map((e) => e.value));
  assert(reasons.join() === 'spam,nudity,harassment,underage,other', `reasons: ${reasons}`);
  await a.check('#reportDlg input[value=spam]');
  await a.fill('#reportNote', 'selling followers');
  await a.screenshot({ path: join(shots, 'safety-report-menu.png') });
  await a.click('#reportSend');
  await waitSys(a, /report was sent/);
  await waitStatus(a, /looking for a stranger/, 'A');
  await waitStatus(b, /left/, 'B');
  await a.screenshot({ path: join(shots, 'safety-reported.png') });
  const reports = await adminGet('/admin/reports');
  const r = reports[reports.length - 1];
  assert(r && r.reason === 'spam' && r.note === 'selling followers', JSON.stringify(r));
  assert(r.reporter === '198.51.100.1' && r.reported === '198.51.100.2', `addresses ${r.reporter} ${r.reported}`);
  assert(r.messages.some((m) => m.from === 'reported' && /cheap followers/.test(m.text)), JSON.stringify(r.messages));
});

step('Block: the stranger is left, and the two are not paired again', async () => {
  c = await stranger('C', '198.51.100.3', DESKTOP, true);
  await c.goto(base + '/', { timeout: WAIT, waitUntil: 'domcontentloaded' });
  await waitStatus(c, /now chatting/, 'C');
  await waitStatus(a, /now chatting/, 'A');
  await c.click('#block');
  await waitSys(c, /blocked the stranger/);
  await waitStatus(a, /left/, 'A');
  await c.screenshot({ path: join(shots, 'safety-blocked.png') });
  // A looks again: C and A are both queued, B is idle; nobody pairs them.
  await a.click('#next');
  await waitStatus(a, /looking for a stranger/, 'A');
  await a.waitForTimeout(700);
  assert(/looking/i.test(await a.textContent('#status')), 'A was paired with the stranger who blocked it');
  assert(/looking/i.test(await c.textContent('#status')), 'C was paired with the stranger it blocked');
});

step('a ban shows a clear message: until when, and why', async () => {
  const r = await fetch(admin + '/admin/bans', {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ address: '198.51.100.1', minutes: 90, reason: 'spamming links' }),
    signal: AbortSignal.timeout(WAIT),
  });
  assert(r.status === 201, `POST /admin/bans: ${r.status}`);
  const ban = await r.json();
  await a.waitForSelector('#banned', { state: 'visible', timeout: WAIT });
  const text = await a.textContent('#banned');
  assert(/banned/i.test(text) && /spamming links/.test(text) && text.includes(ban.until), `banned text: ${text}`);
  assert(!(await a.isVisible('#input')), 'the chat controls are still shown');
  await a.screenshot({ path: join(shots, 'safety-banned.png') });
  // It does not reconnect by itself, and a reload shows the ban again.
  await a.reload({ waitUntil: 'domcontentloaded' });
  await a.waitForSelector('#banned', { state: 'visible', timeout: WAIT });
});

step('no uncaught errors in the pages', async () => {
  assert(pageErrors.length === 0, pageErrors.join('; '));
});

let broken = null;
for (const s of steps) {
  if (broken) { failed++; console.log(`FAIL ${s.name} (not run: "${broken}" failed)`); continue; }
  try {
    await s.fn();
    passed++;
    console.log(`ok   ${s.name}`);
  } catch (e) {
    failed++;
    broken = s.name;
    console.log(`FAIL ${s.name}\n     ${String(e.message || e).split('\n')[0]}`);
    for (const [n, p] of [['a', a], ['b', b], ['c', c]])
      if (p) await p.screenshot({ path: join(shots, `safety-failure-${n}.png`) }).catch(() => {});
  }
}
await browser.close().catch(() => {});
finish();
