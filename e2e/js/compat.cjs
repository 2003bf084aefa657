// Details an OpenVidu application notices, with the official openvidu-browser
// in headless Chromium:
// - openvidu-browser reads the token's edition: isAtLeastPro is true;
// - one page holding two connections (a camera and a "screen", as
//   openvidu-call does) leaves with both at once: no notification reaches a
//   connection after its leaveRoom answer (checked on the raw WebSocket
//   frames) and openvidu-browser logs no error.
'use strict';

const { chromium } = require('playwright-core');
const { OpenVidu } = require('openvidu-node-client');
const { check, finish, env } = require('./check.cjs');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// sockets records every frame of every WebSocket a page opens, in order.
function recordSockets(page) {
  const sockets = [];
  page.on('websocket', (ws) => {
    const rec = { url: ws.url(), frames: [] };
    sockets.push(rec);
    ws.on('framesent', (f) => rec.frames.push({ dir: 'out', payload: String(f.payload), at: Date.now() }));
    ws.on('framereceived', (f) => rec.frames.push({ dir: 'in', payload: String(f.payload), at: Date.now() }));
  });
  return sockets;
}

// afterLeave returns the frames a socket received after the answer to its
// leaveRoom (null if it sent none or got no answer).
function afterLeave(rec) {
  let leaveId = null;
  let answeredAt = -1;
  rec.frames.forEach((f, i) => {
    let msg;
    try { msg = JSON.parse(f.payload); } catch (e) { return; }
    if (f.dir === 'out' && msg.method === 'leaveRoom') leaveId = msg.id;
    if (f.dir === 'in' && leaveId !== null && answeredAt < 0 && msg.id === leaveId && !msg.method) answeredAt = i;
  });
  if (answeredAt < 0) return null;
  return rec.frames.slice(answeredAt + 1).filter((f) => f.dir === 'in').map((f) => f.payload.slice(0, 200));
}

// pending returns the ids of the requests a socket sent and has no answer for.
function pending(rec) {
  const open = new Set();
  for (const f of rec.frames) {
    let msg;
    try { msg = JSON.parse(f.payload); } catch (e) { continue; }
    if (msg.id === undefined || msg.id === null) continue;
    if (f.dir === 'out' && msg.method) open.add(msg.id);
    if (f.dir === 'in' && !msg.method) open.delete(msg.id);
  }
  return [...open];
}

// quiet waits until no socket of recs has had a request awaiting its answer
// for 500 ms: the page's subscriptions to each other are negotiated. Leaving
// in the middle of one makes openvidu-browser answer an offer on a closed
// socket, whatever the server does (its own error, not what this checks).
async function quiet(recs) {
  let since = Date.now();
  for (const deadline = Date.now() + 15000; Date.now() < deadline;) {
    if (recs.some((r) => pending(r).length > 0)) since = Date.now();
    else if (Date.now() - since >= 500) return true;
    await sleep(50);
  }
  return false;
}

(async () => {
  const url = env('CHORUS_URL');
  const ov = new OpenVidu(url, env('CHORUS_SECRET'));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const open = async () => {
    const page = await context.newPage();
    const errors = [];
    page.on('console', async (msg) => {
      if (msg.type() !== 'error') return;
      // openvidu-browser logs OpenViduError objects: keep their name and message.
      const args = await Promise.all(msg.args().map((a) => a.evaluate((v) => (v && v.message ? v.name + ': ' + v.message : String(v))).catch(() => '?')));
      errors.push(args.join(' ') || msg.text());
    });
    page.on('pageerror', (err) => errors.push(err.message));
    const sockets = recordSockets(page);
    await page.goto(url + '/');
    await page.waitForFunction(() => typeof OpenVidu === 'function');
    return { page, errors, sockets };
  };

  const session = await ov.createSession({ customSessionId: 'compat_' + Math.random().toString(36).slice(2, 8) });
  const other = await open();
  const otherConn = await session.createConnection({ data: 'other' });
  await other.page.evaluate((token) => window.chorusDemo.join(token, 'other'), otherConn.token);

  const two = await open();
  for (let round = 0; round < 3; round++) {
    const tokens = [(await session.createConnection({ data: 'camera' })).token, (await session.createConnection({ data: 'screen' })).token];
    const editions = await two.page.evaluate(async (tokens) => {
      window.pair = [];
      const out = [];
      for (const token of tokens) {
        const OV = new OpenVidu(); // not in prod mode: openvidu-browser logs its errors
        const s = OV.initSession();
        s.on('streamCreated', (e) => s.subscribe(e.stream, undefined));
        await s.connect(token);
        const pub = await OV.initPublisherAsync(undefined, { resolution: '320x240', frameRate: 15 });
        await s.publish(pub);
        window.pair.push(s);
        out.push({ isAtLeastPro: OV.isAtLeastPro, isEnterprise: OV.isEnterprise });
      }
      return out;
    }, tokens);
    if (round === 0) {
      check('openvidu-browser reads the edition: isAtLeastPro, not enterprise',
        editions.every((e) => e.isAtLeastPro === true && e.isEnterprise === false), JSON.stringify(editions));
    }
    // The other page sees both streams before they go.
    let seen = 0;
    for (let i = 0; i < 60 && seen < 2 * (round + 1); i++) {
      seen = await other.page.evaluate(() => window.chorusDemo.events().filter((e) => e.type === 'streamCreated').length);
      if (seen < 2 * (round + 1)) await sleep(250);
    }
    check('round ' + round + ': the other page sees both streams', seen >= 2 * (round + 1), seen);
    check('round ' + round + ': the page\'s requests all answered before it leaves', await quiet(two.sockets.slice(-2)), '');
    const before = two.sockets.length;
    const took = await two.page.evaluate(() => { const t0 = performance.now(); for (const s of window.pair) s.disconnect(); return performance.now() - t0; });
    if (process.env.COMPAT_DEBUG) process.stderr.write('disconnect loop took ' + took + ' ms\n');
    await sleep(2000);
    const recs = two.sockets.slice(before - 2);
    for (const rec of recs) {
      if (process.env.COMPAT_DEBUG) process.stderr.write(JSON.stringify(rec.frames.slice(-8).map((f) => f.at % 100000 + ' ' + f.dir + ' ' + f.payload.slice(0, 60))) + '\n');
      const late = afterLeave(rec);
      check('round ' + round + ': nothing after the leaveRoom answer', late !== null && late.length === 0, JSON.stringify(late));
    }
  }
  check('no openvidu-browser error on the leaving page', two.errors.length === 0, JSON.stringify(two.errors.slice(0, 5)));
  await other.page.evaluate(() => window.chorusDemo.leave());
  await browser.close();
  finish();
})().catch((err) => {
  require('./check.cjs').check('unexpected error', false, err && err.stack ? err.stack : err);
  require('./check.cjs').finish();
});
