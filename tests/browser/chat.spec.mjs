// Real-browser test of the chat page (issue 3): Debian chromium, driven by
// playwright-core, against a running server.
//
//   node tests/browser/chat.spec.mjs http://127.0.0.1:PORT
//
// Two strangers (a desktop page and a phone-sized page) get paired, talk,
// see each other typing, and leave. Screenshots go to tests/browser/screenshots/.
// Every wait is bounded; the last line is "N passed, M failed".
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const base = (process.argv[2] || process.env.CHAT_URL || '').replace(/\/+$/, '');
if (!/^https?:\/\//.test(base)) {
  console.error('usage: node tests/browser/chat.spec.mjs http://127.0.0.1:PORT');
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
// Hard ceiling on the whole run, whatever hangs.
setTimeout(() => { console.error('FAIL whole run timed out after 120 s'); failed++; finish(1); }, 120_000).unref();

const steps = [];
const step = (name, fn) => steps.push({ name, fn });

const statusOf = (p) => p.textContent('#status');
const waitStatus = (p, re, what) =>
  p.waitForFunction((src) => new RegExp(src, 'i').test(document.getElementById('status').textContent),
    re.source, { timeout: WAIT }).catch(async () => {
    throw new Error(`${what}: #status never matched ${re}; it says "${await statusOf(p)}"`);
  });
const typingShown = (p) => p.evaluate(() => {
  const t = document.getElementById('typing');
  return getComputedStyle(t).visibility === 'visible' && t.offsetHeight > 0;
});
const waitTyping = (p, on) =>
  p.waitForFunction((want) => {
    const t = document.getElementById('typing');
    return (getComputedStyle(t).visibility === 'visible' && t.offsetHeight > 0) === want;
  }, on, { timeout: WAIT });
const lastMsg = (p, who) => p.evaluate((who) => {
  const all = document.querySelectorAll(`#log .msg.${who}`);
  const m = all[all.length - 1];
  return m ? { label: m.querySelector('.who').textContent, text: m.querySelector('.text').textContent } : null;
}, who);
const waitMsg = (p, who, text) =>
  p.waitForFunction(([who, text]) => [...document.querySelectorAll(`#log .msg.${who} .text`)]
    .some((e) => e.textContent === text), [who, text], { timeout: WAIT });
function assert(cond, msg) { if (!cond) throw new Error(msg); }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  timeout: 30_000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
// Over https:// (run.sh --tls) the server's certificate is made by the test:
// the browser is told to accept it.
const secure = base.startsWith('https:');
const tlsOpts = secure ? { ignoreHTTPSErrors: true } : {};
const desk = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...tlsOpts });
const phone = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, ...tlsOpts });
// The 18+ notice was accepted before (tests/browser/safety.spec.mjs shows it).
for (const c of [desk, phone]) await c.addInitScript(() => { try { localStorage.setItem('chat.agreed18', '1'); } catch (e) {} });
const a = await desk.newPage();
const b = await phone.newPage();
const socketUrls = [];
for (const [name, p] of [['A', a], ['B', b]]) {
  p.setDefaultTimeout(WAIT);
  p.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  p.on('websocket', (ws) => socketUrls.push(ws.url()));
}

const evil = 'hi <b>bold</b> & <img src=x onerror=alert(1)> "quotes"';

step('GET / serves the page', async () => {
  for (const p of [a, b]) {
    const r = await p.goto(base + '/', { timeout: WAIT, waitUntil: 'domcontentloaded' });
    assert(r && r.status() === 200, `GET / answered ${r && r.status()}`);
    assert(/text\/html/.test(r.headers()['content-type'] || ''), 'GET / is not text/html');
    for (const id of ['status', 'log', 'input', 'send', 'next', 'interests', 'online', 'typing'])
      assert(await p.$('#' + id), `#${id} missing`);
  }
});

step('both pages get paired', async () => {
  await waitStatus(a, /now chatting/, 'A');
  await waitStatus(b, /now chatting/, 'B');
});

step(`the page's WebSocket is ${secure ? 'wss:' : 'ws:'} like the page's ${secure ? 'https:' : 'http:'}`, async () => {
  const want = secure ? 'wss:' : 'ws:';
  assert(socketUrls.length > 0, 'no WebSocket seen');
  for (const u of socketUrls) assert(u.startsWith(want + '//'), `WebSocket ${u} is not ${want}`);
});

step('online count shows both clients', async () => {
  // B learns 2 from its `waiting`; A from the /stats poll (every 5 s).
  for (const p of [a, b])
    await p.waitForFunction(() => /\b2\b/.test(document.getElementById('online').textContent), null, { timeout: WAIT })
      .catch(async () => { throw new Error(`#online says "${await p.textContent('#online')}"`); });
});

step('typing shows "Stranger is typing" on the other side', async () => {
  assert(!(await typingShown(b)), 'typing indicator shown before anyone typed');
  await a.click('#input');
  await a.keyboard.type('hel');
  await waitTyping(b, true);
  assert(/typing/i.test(await b.textContent('#typing')), 'indicator text');
});

step('a message typed in A (with HTML in it) reaches B as plain text', async () => {
  await a.fill('#input', evil);
  await a.press('#input', 'Enter');
  await waitMsg(b, 'stranger', evil);
  const m = await lastMsg(b, 'stranger');
  assert(m.label === 'Stranger:', `label is "${m.label}"`);
  assert(await b.$('#log b, #log img') === null, 'markup from a message was rendered as HTML');
  const mine = await lastMsg(a, 'you');
  assert(mine && mine.label === 'You:' && mine.text === evil, 'A does not show its own message as "You:"');
  assert(await a.inputValue('#input') === '', 'input not cleared after sending');
  await waitTyping(b, false);
});

step('the colours of "You" and "Stranger" differ', async () => {
  const col = (p, who) => p.evaluate((who) => getComputedStyle(document.querySelector(`#log .msg.${who} .who`)).color, who);
  assert(await col(a, 'you') !== await col(b, 'stranger'), 'same colour for both');
});

step('B answers with the Send button; A sees it', async () => {
  await b.fill('#input', 'hello from the phone');
  await b.click('#send');
  await waitMsg(a, 'stranger', 'hello from the phone');
});

step('typing indicator goes away after ~3 s of inactivity', async () => {
  await a.click('#input');
  await a.keyboard.type('still thinking');
  await waitTyping(b, true);
  await b.screenshot({ path: join(shots, 'phone-typing.png') });
  const t0 = Date.now();
  await waitTyping(b, false);
  const took = Date.now() - t0;
  assert(took > 1500, `indicator dropped after only ${took} ms`);
  await a.fill('#input', '');
});

step('screenshots while chatting (desktop)', async () => {
  await a.screenshot({ path: join(shots, 'desktop-chatting.png') });
});

step('Next in A (pressed twice to confirm): B sees the stranger left', async () => {
  await a.click('#next');
  await a.click('#next');
  await waitStatus(b, /left|disconnected/, 'B');
  await waitStatus(a, /looking for a stranger/, 'A');
  assert(!(await b.isEnabled('#send')), 'B can still send after the stranger left');
  await b.screenshot({ path: join(shots, 'phone-left.png') });
});

step('New in B pairs the two again', async () => {
  await b.click('#next');
  await waitStatus(b, /now chatting/, 'B');
  await waitStatus(a, /now chatting/, 'A');
});

step('Esc twice in A leaves too', async () => {
  await a.keyboard.press('Escape');
  await a.keyboard.press('Escape');
  await waitStatus(b, /left|disconnected/, 'B');
  await b.click('#next');
  await waitStatus(a, /now chatting/, 'A');
});

step('closing B: A sees "Stranger has disconnected"', async () => {
  await b.close();
  await waitStatus(a, /disconnected/, 'A');
  await a.screenshot({ path: join(shots, 'desktop-left.png') });
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
    await a.screenshot({ path: join(shots, 'failure-desktop.png') }).catch(() => {});
    await b.screenshot({ path: join(shots, 'failure-phone.png') }).catch(() => {});
  }
}
await browser.close().catch(() => {});
finish();
