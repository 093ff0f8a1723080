// Real-browser test of video calls (issue 15): Debian chromium with a fake
// camera, driven by playwright-core, against two running servers: a plain one
// (no ICE servers) and one handing out TURN credentials for a local coturn.
// Normally started by tests/browser/video.sh, which also starts coturn and
// keeps everything in a private network namespace (loopback only):
//
//   node video.spec.mjs http://127.0.0.1:P1 --turn http://127.0.0.1:P2 \
//        --turn-port TP --turn-secret-file FILE [--screens DIR]
//
// A: two pages pair, video frames decode on both sides, text still flows;
//    Next ends the call (both old peer connections closed), a third page
//    pairs with the one who pressed Next and gets video too.
// B: both pages forced to relay (`ice=relay`) get frames through coturn; the
//    selected candidate pair is a relay one; the credentials are the server's.
// Every wait is bounded; the last line is "N passed, M failed".
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DESKTOP, PHONE, launch, openPage, pcConfig, parseArgs, probe, sleep, turnPassword, waitFramesGrow, waitProbe } from './video-lib.mjs';

const args = parseArgs(process.argv.slice(2));
if (!/^https?:\/\//.test(args.url) || !/^https?:\/\//.test(args.turn || '') || !args['turn-port'] || !args['turn-secret-file']) {
  console.error('usage: node video.spec.mjs URL --turn URL --turn-port PORT --turn-secret-file FILE [--screens DIR]');
  process.exit(2);
}
const shots = args.screens || join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
mkdirSync(shots, { recursive: true });
const CALL = 15_000; // contract: a call that has not connected in 15 s has failed
const WAIT = 10_000;

let passed = 0, failed = 0;
const errors = [];
function finish(code) {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code ?? (failed ? 1 : 0));
}
setTimeout(() => { console.error('FAIL whole run timed out after 180 s'); failed++; finish(1); }, 180_000).unref();

function assert(cond, msg) { if (!cond) throw new Error(msg); }
const steps = [];
const step = (name, fn) => steps.push({ name, fn });
const pages = {};
const browser = await launch();

const paired = (p, what) => waitProbe(p, (s) => s.debug && typeof s.pair === 'string' && s.pc, WAIT, `${what}: not paired with a peer connection`);
const waitMsg = (p, text) => p.waitForFunction((text) => [...document.querySelectorAll('#log .msg.stranger .text')]
  .some((e) => e.textContent === text), text, { timeout: WAIT });
async function say(from, to, text) {
  await from.fill('#input', text);
  await from.press('#input', 'Enter');
  await waitMsg(to, text);
}
const markOldPc = (p) => p.evaluate(() => { window.__oldPc = window.chatDebug.pc; window.__oldPair = window.chatDebug.pair; });
const oldPcClosed = (p) => p.waitForFunction(() => window.__oldPc && window.__oldPc.connectionState === 'closed'
  && window.__oldPc.signalingState === 'closed', null, { timeout: WAIT });
const liveCamera = (p) => p.evaluate(() => {
  const s = document.getElementById('localVideo').srcObject;
  return !!s && s.getVideoTracks().some((t) => t.readyState === 'live');
});

step('A: two pages on /?video=1 get paired, same pair id', async () => {
  pages.a = await openPage(browser, args.url + '/?video=1', DESKTOP, 'A', errors);
  pages.b = await openPage(browser, args.url + '/?video=1', PHONE, 'B', errors);
  for (const id of ['remoteVideo', 'localVideo', 'cameraToggle', 'muteButton', 'cameraOffButton', 'videoStatus'])
    for (const p of [pages.a, pages.b]) assert(await p.$('#' + id), `#${id} missing`);
  const [sa, sb] = await Promise.all([paired(pages.a, 'A'), paired(pages.b, 'B')]);
  assert(/^[0-9a-f]{16}$/.test(sa.pair), `pair id "${sa.pair}" is not 16 lowercase hex`);
  assert(sa.pair === sb.pair, `pair ids differ: ${sa.pair} / ${sb.pair}`);
});

step('A: the page adds no ICE server when the server configures none', async () => {
  for (const p of [pages.a, pages.b]) {
    const c = await pcConfig(p);
    assert(c && c.iceServers.length === 0, `iceServers ${JSON.stringify(c && c.iceServers)}`);
    assert(c.iceTransportPolicy === 'all', `iceTransportPolicy ${c.iceTransportPolicy}`);
  }
});

step('A: video frames decode and keep coming on both sides within 15 s', async () => {
  const [sa, sb] = await Promise.all([waitFramesGrow(pages.a, CALL, 'A'), waitFramesGrow(pages.b, CALL, 'B')]);
  for (const [n, s] of [['A', sa], ['B', sb]]) {
    assert(s.selected && s.selected.local === 'host' && s.selected.localAddress === '127.0.0.1',
      `${n}: selected pair ${JSON.stringify(s.selected)} is not a loopback host pair`);
  }
  for (const [n, p] of [['A', pages.a], ['B', pages.b]]) {
    const s = await waitProbe(p, (x) => x.videoState === 'connected' && x.remoteVideoWidth > 0, WAIT,
      `${n}: videoState "connected" and #remoteVideo showing frames`);
    assert(s.signalsSent > 0 && s.signalsReceived > 0, `${n}: signal counters ${s.signalsSent}/${s.signalsReceived}`);
  }
});

step('A: screenshots of the call (1280x800, 360x740)', async () => {
  await sleep(500); // a few more frames painted
  await pages.a.screenshot({ path: join(shots, 'video-desktop.png') });
  await pages.b.screenshot({ path: join(shots, 'video-phone.png') });
});

step('A: text messages still flow both ways during the call', async () => {
  await say(pages.a, pages.b, 'hello over video');
  await say(pages.b, pages.a, 'hello back');
  const s = await probe(pages.a);
  assert(s.connectionState === 'connected', `A's call dropped while texting: ${s.connectionState}`);
});

step('A: Next (pressed twice) closes both old peer connections; B keeps its camera', async () => {
  await markOldPc(pages.a);
  await markOldPc(pages.b);
  await pages.a.click('#next');
  await pages.a.click('#next');
  await oldPcClosed(pages.a);
  await oldPcClosed(pages.b);
  await waitProbe(pages.b, (s) => s.pair === null, WAIT, 'B: chatDebug.pair back to null after `left`');
  assert(await liveCamera(pages.b), 'B: camera stopped after the stranger left');
  assert(await liveCamera(pages.a), 'A: camera stopped after Next');
});

step('A: a third page pairs with the waiting one (A) and gets video; B stays idle', async () => {
  pages.c = await openPage(browser, args.url + '/?video=1', DESKTOP, 'C', errors);
  const [sa, sc] = await Promise.all([paired(pages.c, 'C'), waitProbe(pages.a, (s) => s.pair && s.pc, WAIT, 'A: paired again')]);
  const old = await pages.a.evaluate(() => window.__oldPair);
  assert(sa.pair === sc.pair && sa.pair !== old, `pairs: C ${sa.pair}, A ${sc.pair}, old ${old}`);
  assert(await pages.a.evaluate(() => window.chatDebug.pc !== window.__oldPc), 'A reuses its old peer connection');
  await Promise.all([waitFramesGrow(pages.a, CALL, 'A'), waitFramesGrow(pages.c, CALL, 'C')]);
  const sb = await probe(pages.b);
  assert(sb.pair === null, `B got paired (${sb.pair}) while idle`);
});

step('B (TURN): coturn relays a call between two `ice=relay` pages', async () => {
  for (const k of ['a', 'b', 'c']) if (pages[k]) await pages[k].context().close();
  pages.d = await openPage(browser, args.turn + '/?video=1&ice=relay', DESKTOP, 'D', errors);
  pages.e = await openPage(browser, args.turn + '/?video=1&ice=relay', PHONE, 'E', errors);
  await Promise.all([paired(pages.d, 'D'), paired(pages.e, 'E')]);
  const [sd, se] = await Promise.all([waitFramesGrow(pages.d, CALL, 'D'), waitFramesGrow(pages.e, CALL, 'E')]);
  for (const [n, s] of [['D', sd], ['E', se]])
    assert(s.selected && s.selected.state === 'succeeded' && s.selected.local === 'relay',
      `${n}: selected pair ${JSON.stringify(s.selected)} is not a succeeded relay pair`);
});

step('B (TURN): the page uses the server\'s TURN URL and credentials, relay only', async () => {
  for (const [n, p] of [['D', pages.d], ['E', pages.e]]) {
    const c = await pcConfig(p);
    const pair = (await probe(p)).pair;
    assert(c.iceTransportPolicy === 'relay', `${n}: iceTransportPolicy ${c.iceTransportPolicy}`);
    const url = `turn:127.0.0.1:${args['turn-port']}`;
    const t = c.iceServers.find((s) => [].concat(s.urls).includes(url));
    assert(t, `${n}: no ${url} in ${JSON.stringify(c.iceServers)}`);
    const m = /^(\d+):([0-9a-f]{16})$/.exec(t.username || '');
    assert(m && m[2] === pair, `${n}: username "${t.username}" is not EXPIRY:${pair}`);
    const ttl = Number(m[1]) - Date.now() / 1000;
    assert(ttl > 3000 && ttl <= 3660, `${n}: credential expires in ${ttl.toFixed(0)} s, not ~1 h`);
    assert(t.credential === turnPassword(args['turn-secret-file'], t.username), `${n}: credential is not HMAC-SHA1(secret, username)`);
  }
});

step('no uncaught errors in the pages', async () => {
  assert(errors.length === 0, errors.join('; '));
});

// A failed step skips the rest of its scenario ("A:", "B (TURN):"), not the other.
const broken = {};
for (const s of steps) {
  const group = s.name.split(':')[0];
  if (broken[group]) { failed++; console.log(`FAIL ${s.name} (not run: "${broken[group]}" failed)`); continue; }
  try {
    await s.fn();
    passed++;
    console.log(`ok   ${s.name}`);
  } catch (e) {
    failed++;
    broken[group] = s.name;
    console.log(`FAIL ${s.name}\n     ${String(e.message || e).split('\n')[0]}`);
    for (const [k, p] of Object.entries(pages)) {
      if (p.isClosed()) continue;
      console.log(`     ${k.toUpperCase()} wire: ${p.wire.join(' ')}`);
      await p.screenshot({ path: join(shots, `video-failure-${k}.png`) }).catch(() => {});
    }
  }
}
await browser.close().catch(() => {});
finish();
