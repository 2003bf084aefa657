// Headless Chromium pages running openvidu-browser (through the demo page),
// steered by the Go tests one command a line on stdin; each answer is one
// JSON line on stdout:
//   join <sessionId> <count>   -> {"joined": [connectionIds]}
//   stats                      -> {"pages": [{"connectionId", "videos": [...], "events": [...]}]}
//   leave                      -> {"left": true}
//   quit                       -> exits
'use strict';

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

async function join(sessionId, count) {
  let session;
  try {
    session = await ov.createSession({ customSessionId: sessionId });
  } catch (e) {
    session = ov.activeSessions.find((s) => s.sessionId === sessionId);
  }
  const ids = [];
  for (let i = 0; i < count; i++) {
    const page = await context.newPage();
    page.on('pageerror', (err) => process.stderr.write('page error: ' + err.message + '\n'));
    await page.goto(url + '/');
    await page.waitForFunction(() => !!window.chorusDemo && typeof OpenVidu === 'function');
    const conn = await session.createConnection({ data: sessionId + '-' + i });
    ids.push(await page.evaluate(([token, name]) => window.chorusDemo.join(token, name), [conn.token, 'page' + pages.length]));
    pages.push(page);
  }
  return ids;
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
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  context = await browser.newContext();
  reply({ ready: true });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, ...args] = line.trim().split(/\s+/);
    try {
      if (cmd === 'join') reply({ joined: await join(args[0], Number(args[1] || 1)) });
      else if (cmd === 'stats') reply({ pages: await stats() });
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
