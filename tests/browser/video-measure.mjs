// Measures video call set-up on loopback; prints figures, asserts nothing
// about speed (not run in CI). Started by `tests/browser/video.sh BIN
// --measure N`, which provides the servers, coturn and the private namespace:
//
//   node video-measure.mjs http://127.0.0.1:P1 --turn http://127.0.0.1:P2 --calls N
//
// N calls on the plain server, then N on the TURN one with `ice=relay`; each
// call is two fresh pages (own contexts) that pair with each other. Per side:
// the time from `paired` (chatDebug.pairedAt) to the first decoded remote
// frame, found by an in-page poll of getStats every ~10 ms installed before
// the page's own script runs. Per call: signals sent by both sides once the
// counts stop moving. Every call is bounded (20 s); a failed call is counted
// and reported, the run goes on.
import { AGREE_18, DESKTOP, launch, median, parseArgs, probe, sleep } from './video-lib.mjs';

const args = parseArgs(process.argv.slice(2));
const calls = Number(args.calls || 20);
if (!/^https?:\/\//.test(args.url) || !/^https?:\/\//.test(args.turn || '') || !(calls >= 1 && calls <= 200)) {
  console.error('usage: node video-measure.mjs URL --turn URL [--calls N (1..200)]');
  process.exit(2);
}
const CALL = 20_000;
setTimeout(() => { console.error(`measure: whole run over ${calls * 2 * 25 + 60} s, stopping`); process.exit(1); },
  (calls * 2 * 25 + 60) * 1000).unref();

// Runs in the page before its scripts: records when the current pc first
// shows a decoded inbound video frame, relative to the page's clock.
function firstFramePoller() {
  window.__firstFrame = null;
  const tick = async () => {
    const d = window.chatDebug;
    if (d && d.pc && !window.__firstFrame) {
      try {
        const st = await d.pc.getStats();
        st.forEach((s) => {
          if (!window.__firstFrame && s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0)
            window.__firstFrame = { at: performance.now(), pairedAt: d.pairedAt, pair: d.pair };
        });
      } catch { /* pc closed under us: try again */ }
    }
    if (!window.__firstFrame) setTimeout(tick, 10);
  };
  setTimeout(tick, 10);
}

async function oneCall(browser, url, errors) {
  const ctxs = [];
  try {
    const pages = [];
    for (const name of ['X', 'Y']) {
      const ctx = await browser.newContext(DESKTOP);
      ctxs.push(ctx);
      await ctx.grantPermissions(['camera', 'microphone']).catch(() => {});
      await ctx.addInitScript(AGREE_18);
      await ctx.addInitScript(firstFramePoller);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
      await page.goto(url, { timeout: 10_000, waitUntil: 'domcontentloaded' });
      pages.push(page);
    }
    const end = Date.now() + CALL;
    let ff;
    for (;;) {
      ff = await Promise.all(pages.map((p) => p.evaluate(() => window.__firstFrame)));
      if (ff.every((f) => f)) break;
      if (Date.now() > end) throw new Error(`no first frame within ${CALL} ms: ${JSON.stringify(ff)}`);
      await sleep(100);
    }
    if (ff[0].pair !== ff[1].pair) throw new Error(`the two pages are in different pairs: ${ff[0].pair} / ${ff[1].pair}`);
    // Trickle ICE may go on after the first frame: wait until both counters
    // hold still for 500 ms (at most 5 s).
    let last = null, sent = 0, sel = [];
    const quiet = Date.now() + 5_000;
    for (;;) {
      const s = await Promise.all(pages.map(probe));
      const now = s.map((x) => `${x.signalsSent}/${x.signalsReceived}`).join(' ');
      sent = s[0].signalsSent + s[1].signalsSent;
      sel = s.map((x) => x.selected && x.selected.local);
      if (now === last || Date.now() > quiet) break;
      last = now;
      await sleep(500);
    }
    return { ttf: ff.map((f) => f.at - f.pairedAt), signals: sent, selected: sel };
  } finally {
    for (const c of ctxs) await c.close().catch(() => {});
  }
}

const fmt = (x) => (Number.isFinite(x) ? x.toFixed(0) : '-');
const browser = await launch();
let bad = 0;
for (const [mode, url] of [['loopback, no TURN', args.url + '/?video=1'], ['TURN relay', args.turn + '/?video=1&ice=relay']]) {
  const ttf = [], sig = [], errors = [], selected = {};
  let fails = 0;
  for (let i = 0; i < calls; i++) {
    try {
      const r = await oneCall(browser, url, errors);
      ttf.push(...r.ttf);
      sig.push(r.signals);
      for (const s of r.selected) selected[s] = (selected[s] || 0) + 1;
    } catch (e) {
      fails++;
      console.log(`  ${mode}: call ${i + 1} failed: ${String(e.message || e).split('\n')[0]}`);
    }
  }
  bad += fails;
  const sorted = [...ttf].sort((a, b) => a - b);
  console.log(`${mode}: ${calls - fails}/${calls} calls with video; paired -> first decoded remote frame (ms, both sides): ` +
    `median ${fmt(median(ttf))}, min ${fmt(sorted[0])}, p90 ${fmt(sorted[Math.floor(sorted.length * 0.9)])}, max ${fmt(sorted[sorted.length - 1])}; ` +
    `signals per call (both sides): median ${fmt(median(sig))}, min ${fmt(Math.min(...sig))}, max ${fmt(Math.max(...sig))}; ` +
    `selected local candidates ${JSON.stringify(selected)}; page errors ${errors.length}`);
  for (const e of errors.slice(0, 3)) console.log(`  page error: ${e}`);
}
await browser.close().catch(() => {});
process.exit(bad ? 1 : 0);
