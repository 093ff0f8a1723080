// Shared by video.spec.mjs and video-measure.mjs: launching Chromium with a
// fake camera, and reading a page's call state through `window.chatDebug`
// (the test hooks of PROTOCOL.md "Video" / notes/video-contract.md).
import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** Command line: URL first, then `--name value` pairs. */
export function parseArgs(argv) {
  const out = { url: (argv[0] || '').replace(/\/+$/, '') };
  for (let i = 1; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

// Why each flag (found by trying, Chromium 156):
// - fake device + fake UI: a synthetic camera and microphone, and no
//   permission prompt;
// - allow-loopback-in-peer-connection: without it Chromium gathers no host
//   candidate at all in a namespace that only has `lo`, so two pages on one
//   machine cannot connect without TURN;
// - WebRtcHideLocalIpsWithMdns off: host candidates carry 127.0.0.1 rather
//   than a random .local name nobody here can resolve (Chromium skips mDNS
//   once the camera is granted, but a page without camera would still use it).
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required'];

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 30_000,
    args: CHROMIUM_ARGS,
  });
}

/** Accepts the page's first-visit 18+ notice before it loads. */
export const AGREE_18 = () => { try { localStorage.setItem('chat.agreed18', '1'); } catch (e) {} };

export const DESKTOP = { viewport: { width: 1280, height: 800 } };
export const PHONE = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

/** A fresh context (own cookies, own camera grant) with one page on `url`. */
export async function openPage(browser, url, opts, name, errors) {
  const ctx = await browser.newContext(opts);
  await ctx.grantPermissions(['camera', 'microphone']).catch(() => {});
  await ctx.addInitScript(AGREE_18);
  const page = await ctx.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  logWire(page);
  const r = await page.goto(url, { timeout: 10_000, waitUntil: 'domcontentloaded' });
  if (!r || r.status() !== 200) throw new Error(`${name}: GET ${url} answered ${r && r.status()}`);
  return page;
}

/** One word for a chat message on the wire: `>offer`, `<cand:relay`, `<paired`. */
function wireWord(dir, payload) {
  let m;
  try { m = JSON.parse(payload); } catch { return `${dir}?`; }
  if (!m || m.type !== 'signal') return `${dir}${m && m.type}`;
  const d = m.data || {};
  if (d.description) return `${dir}${d.description.type}`;
  if (d.candidate) return `${dir}cand:${(/ typ (\w+)/.exec(d.candidate.candidate || '') || [])[1] || 'end'}`;
  return `${dir}signal`;
}

/**
 * Keeps the last 60 chat messages a page sent (>) and received (<) in
 * `page.wire`, for failure messages: where a call's negotiation stopped.
 */
export function logWire(page) {
  page.wire = [];
  page.on('websocket', (ws) => {
    const add = (dir) => (f) => {
      page.wire.push(wireWord(dir, f.payload));
      if (page.wire.length > 60) page.wire.shift();
    };
    ws.on('framesent', add('>'));
    ws.on('framereceived', add('<'));
  });
}

/**
 * One look at a page: its chatDebug fields, and from `pc.getStats()` the
 * decoded video frames and the selected candidate pair (the transport's
 * selectedCandidatePairId; failing that a nominated, succeeded pair).
 */
export function probe(page) {
  return page.evaluate(async () => {
    const d = window.chatDebug;
    if (!d) return { debug: false };
    const pc = d.pc;
    const r = {
      debug: true, pair: d.pair, videoState: d.videoState, pairedAt: d.pairedAt,
      signalsSent: d.signalsSent, signalsReceived: d.signalsReceived, now: performance.now(),
      pc: !!pc, connectionState: pc ? pc.connectionState : null, frames: 0, selected: null,
      // for failure messages: where negotiation stopped
      signalingState: pc ? pc.signalingState : null, iceConnectionState: pc ? pc.iceConnectionState : null,
      iceGatheringState: pc ? pc.iceGatheringState : null,
      descriptions: pc ? `${pc.localDescription && pc.localDescription.type}/${pc.remoteDescription && pc.remoteDescription.type}` : null,
    };
    if (pc && pc.connectionState !== 'closed') {
      const st = await pc.getStats();
      let sel = null;
      st.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') r.frames = Math.max(r.frames, s.framesDecoded || 0);
        if (s.type === 'transport' && s.selectedCandidatePairId) sel = st.get(s.selectedCandidatePairId) || sel;
      });
      if (!sel) st.forEach((s) => { if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) sel = s; });
      if (sel) {
        const l = st.get(sel.localCandidateId) || {}, rem = st.get(sel.remoteCandidateId) || {};
        r.selected = { state: sel.state, local: l.candidateType, localAddress: l.address, remote: rem.candidateType, remoteAddress: rem.address };
      }
    }
    const v = document.getElementById('remoteVideo');
    r.remoteVideoWidth = v ? v.videoWidth : -1;
    return r;
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until `ok(probe)` holds; throws after `ms` with the last probe. */
export async function waitProbe(page, ok, ms, what) {
  const end = Date.now() + ms;
  let last = null;
  for (;;) {
    last = await probe(page);
    if (ok(last)) return last;
    if (Date.now() > end) throw new Error(`${what} within ${ms} ms; last: ${JSON.stringify(last)}`);
    await sleep(200);
  }
}

/** Waits for decoded frames, then for the count to grow again: video is live. */
export async function waitFramesGrow(page, ms, what) {
  const end = Date.now() + ms;
  const first = await waitProbe(page, (p) => p.frames > 0, ms, `${what}: no decoded video frame`);
  return waitProbe(page, (p) => p.frames > first.frames, Math.max(end - Date.now(), 1000),
    `${what}: framesDecoded stuck at ${first.frames}`);
}

/** The ICE configuration the page gave its current RTCPeerConnection. */
export const pcConfig = (page) => page.evaluate(() => {
  const pc = window.chatDebug && window.chatDebug.pc;
  if (!pc) return null;
  const c = pc.getConfiguration();
  return { iceTransportPolicy: c.iceTransportPolicy, iceServers: c.iceServers || [] };
});

/** The TURN REST password the server should have made for `username`. */
export function turnPassword(secretFile, username) {
  const secret = readFileSync(secretFile, 'utf8').trim();
  return createHmac('sha1', secret).update(username).digest('base64');
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
