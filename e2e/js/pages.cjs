// Headless Chromium pages running openvidu-browser (through the demo page),
// steered by the Go tests one command a line on stdin; each answer is one
// JSON line on stdout:
//   session <sessionId> <json SessionProperties>
//                              -> {"session": "<sessionId>"} (openvidu-node-client's createSession)
//   join <sessionId> <count> [mediaNodeId]
//                              -> {"joined": [connectionIds]}
//   stats                      -> {"pages": [{"connectionId", "videos": [...], "events": [...]}]}
//   gaps <sinceMs>             -> {"pages": [{"connectionId", "gaps": [{"connectionId", "maxGapMs", ...}]}]}
//   transports                 -> {"pages": [{"connectionId", "transports": [{"kind", "local", "remote", ...}]}]}
//   videostats                 -> {"pages": [{"connectionId", "videos": [{"kind", "connectionId", "rtp": [...]}]}]}
//   timings                    -> {"pages": [{"connectionId", "timings": {"joinStartedAt", "firstFrames", ...}}]}
//   rec start <sessionId> <json RecordingProperties>
//   rec stop|get|delete <recordingId>
//   rec list                   -> {"recording": {...}} | {"recordings": [...]} | {"deleted": true},
//                                 or {"status": <HTTP status>} when openvidu-node-client rejects
//   leave                      -> {"left": true}
//   reset                      -> {"reset": true}   (leave, and close every page)
//   quit                       -> exits
// CHORUS_CHROMIUM_ARGS adds Chromium flags (space-separated);
// CHORUS_ICE_TRANSPORT_POLICY ("relay") goes to openvidu-browser's advanced
// configuration (rtcConfiguration.iceTransportPolicy); CHORUS_RESOLUTION
// ("1280x720") is the publishers' camera resolution (default 640x480);
// CHORUS_PUBLISH=false makes the pages viewers, which only subscribe.
'use strict';

// stdout carries the answers only: openvidu-node-client logs there (for
// instance when a second pages.cjs joins an existing session), with the
// console functions it takes when it loads.
for (const level of ['log', 'info', 'debug']) console[level] = (...args) => process.stderr.write(args.join(' ') + '\n');

const readline = require('readline');
const { chromium } = require('playwright-core');
const { OpenVidu } = require('openvidu-node-client');
const { env } = require('./check.cjs');

const url = env('CHORUS_URL');
const ov = new OpenVidu(url, env('CHORUS_SECRET'));
let browser;
let context;
const pages = [];

function reply(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

async function join(sessionId, count, mediaNode) {
  // openvidu-node-client resolves a 409 (the session exists) with the
  // existing session: any error here is a real one.
  const session = await ov.createSession(mediaNode ? { customSessionId: sessionId, mediaNode: { id: mediaNode } } : { customSessionId: sessionId });
  const ids = [];
  for (let i = 0; i < count; i++) {
    const page = await context.newPage();
    page.on('pageerror', (err) => process.stderr.write('page error: ' + err.message + '\n'));
    if (process.env.CHORUS_PAGE_LOGS) {
      const n = pages.length;
      page.on('console', (msg) => process.stderr.write(new Date().toISOString() + ' page' + n + ' ' + msg.type() + ': ' + msg.text() + '\n'));
    }
    await page.goto(url + '/');
    await page.waitForFunction(() => !!window.chorusDemo && typeof OpenVidu === 'function');
    const conn = await session.createConnection({ data: sessionId + '-' + i });
    const options = process.env.CHORUS_ICE_TRANSPORT_POLICY ? { iceTransportPolicy: process.env.CHORUS_ICE_TRANSPORT_POLICY } : {};
    if (process.env.CHORUS_RESOLUTION) options.resolution = process.env.CHORUS_RESOLUTION;
    if (process.env.CHORUS_PUBLISH === 'false') options.publish = false;
    ids.push(await page.evaluate(([token, name, debug, opts]) => window.chorusDemo.join(token, name, debug, opts),
      [conn.token, 'page' + pages.length, !!process.env.CHORUS_PAGE_LOGS, options]));
    await page.evaluate(() => window.chorusDemo.trackFrames());
    pages.push(page);
  }
  return ids;
}

// rec drives openvidu-node-client's recording calls; a call rejected with
// an HTTP status (node-client rejects with Error(String(status))) answers
// that status.
async function rec(op, args) {
  try {
    if (op === 'start') return { recording: await ov.startRecording(args[0], JSON.parse(args.slice(1).join(' ') || '{}')) };
    if (op === 'stop') return { recording: await ov.stopRecording(args[0]) };
    if (op === 'get') return { recording: await ov.getRecording(args[0]) };
    if (op === 'list') return { recordings: await ov.listRecordings() };
    if (op === 'delete') { await ov.deleteRecording(args[0]); return { deleted: true }; }
  } catch (err) {
    const status = Number(err && err.message);
    if (status) return { status };
    throw err;
  }
  throw new Error('unknown rec operation ' + op);
}

async function gaps(since) {
  return Promise.all(pages.map((p) => p.evaluate((s) => ({
    connectionId: window.chorusDemo.connectionId(),
    gaps: window.chorusDemo.frameGaps(s),
  }), since)));
}

async function videoStats() {
  return Promise.all(pages.map(async (p) => ({
    connectionId: await p.evaluate(() => window.chorusDemo.connectionId()),
    videos: await p.evaluate(() => window.chorusDemo.videoStats()),
  })));
}

async function transports() {
  return Promise.all(pages.map(async (p) => ({
    connectionId: await p.evaluate(() => window.chorusDemo.connectionId()),
    transports: await p.evaluate(() => window.chorusDemo.transports()),
  })));
}

async function timings() {
  return Promise.all(pages.map((p) => p.evaluate(() => ({
    connectionId: window.chorusDemo.connectionId(),
    timings: window.chorusDemo.timings(),
  }))));
}

async function stats() {
  return Promise.all(pages.map((p) => p.evaluate(() => ({
    connectionId: window.chorusDemo.connectionId(),
    videos: window.chorusDemo.videos(),
    events: window.chorusDemo.events(),
  }))));
}

(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
      ...(process.env.CHORUS_CHROMIUM_ARGS || '').split(/\s+/).filter(Boolean)],
  });
  context = await browser.newContext({ ignoreHTTPSErrors: true }); // the proxy's self-signed mode
  reply({ ready: true });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, ...args] = line.trim().split(/\s+/);
    try {
      if (cmd === 'session') {
        const s = await ov.createSession({ ...JSON.parse(args.slice(1).join(' ') || '{}'), customSessionId: args[0] });
        reply({ session: s.sessionId });
      }
      else if (cmd === 'join') reply({ joined: await join(args[0], Number(args[1] || 1), args[2]) });
      else if (cmd === 'rec') reply(await rec(args[0], args.slice(1)));
      else if (cmd === 'gaps') reply({ pages: await gaps(Number(args[0])) });
      else if (cmd === 'stats') reply({ pages: await stats() });
      else if (cmd === 'transports') reply({ pages: await transports() });
      else if (cmd === 'videostats') reply({ pages: await videoStats() });
      else if (cmd === 'timings') reply({ pages: await timings() });
      else if (cmd === 'reset') {
        for (const p of pages) await p.evaluate(() => window.chorusDemo.leave());
        for (const p of pages) await p.close();
        pages.length = 0;
        reply({ reset: true });
      }
      else if (cmd === 'leave') {
        for (const p of pages) await p.evaluate(() => window.chorusDemo.leave());
        reply({ left: true });
      } else if (cmd === 'quit') break;
      else reply({ error: 'unknown command ' + cmd });
    } catch (err) {
      reply({ error: String(err && err.stack ? err.stack : err) });
    }
  }
  await browser.close();
  process.exit(0);
})().catch((err) => { process.stderr.write(String(err && err.stack ? err.stack : err) + '\n'); process.exit(1); });
