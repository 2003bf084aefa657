// Headless Chromium pages running the official openvidu-browser (through the
// demo page) join one session, publish their fake cameras and decode each
// other's video. Tokens come from openvidu-node-client.
'use strict';

const { chromium } = require('playwright-core');
const { OpenVidu } = require('openvidu-node-client');
const { check, finish, env } = require('./check.cjs');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const url = env('CHORUS_URL');
  const ov = new OpenVidu(url, env('CHORUS_SECRET'));
  const pagesCount = Number(process.env.CHORUS_PAGES || 3);
  const session = await ov.createSession({ customSessionId: 'browsers_' + Math.random().toString(36).slice(2, 8) });

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true }); // the proxy's self-signed mode
  const pages = [];
  const consoleErrors = [];
  for (let i = 0; i < pagesCount; i++) {
    const page = await context.newPage();
    page.on('pageerror', (err) => consoleErrors.push('page ' + i + ': ' + err.message));
    await page.goto(url + '/');
    await page.waitForFunction(() => !!window.chorusDemo && typeof OpenVidu === 'function');
    pages.push(page);
  }
  const ids = [];
  for (let i = 0; i < pagesCount; i++) {
    const conn = await session.createConnection({ role: 'PUBLISHER', data: 'page' + i });
    ids.push(await pages[i].evaluate(([token, name]) => window.chorusDemo.join(token, name), [conn.token, 'page' + i]));
  }
  check('every page joined', ids.every((id) => /^con_/.test(id)), JSON.stringify(ids));

  // Wait until every page decodes every other page's video.
  const expected = pagesCount - 1;
  let videos = [];
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    videos = await Promise.all(pages.map((p) => p.evaluate(() => window.chorusDemo.videos())));
    if (videos.every((vs) => vs.length === expected && vs.every((v) => v.width > 0 && v.frames > 0))) break;
    await sleep(500);
  }
  check('every page decodes every other video', videos.every((vs) => vs.length === expected && vs.every((v) => v.width > 0 && v.frames > 0)), JSON.stringify(videos));

  // Frames keep coming.
  await sleep(3000);
  const later = await Promise.all(pages.map((p) => p.evaluate(() => window.chorusDemo.videos())));
  const rising = later.every((vs, i) => vs.length === expected && vs.every((v) => {
    const before = videos[i].find((b) => b.connectionId === v.connectionId);
    return before && v.frames > before.frames;
  }));
  check('frame counters keep rising', rising, JSON.stringify({ before: videos, after: later }));

  // The REST API sees the same picture.
  await session.fetch();
  const active = session.activeConnections;
  check('REST lists every participant', active.length === pagesCount, active.length);
  check('each publishes once and subscribes to the others',
    active.every((c) => c.publishers.length === 1 && c.subscribers.length === expected),
    JSON.stringify(active.map((c) => ({ id: c.connectionId, pub: c.publishers.length, sub: c.subscribers.length, platform: c.platform }))));

  const events = await pages[0].evaluate(() => window.chorusDemo.events().map((e) => e.type));
  check('no disconnection seen', !events.includes('sessionDisconnected') && !events.includes('reconnecting'), JSON.stringify(events));

  for (const p of pages) await p.evaluate(() => window.chorusDemo.leave());
  let closed = false;
  for (let i = 0; i < 40 && !closed; i++) {
    try { await session.fetch(); await sleep(250); } catch (e) { closed = e.message === '404'; }
  }
  check('the session closes when the last participant leaves', closed, '');
  check('no page error', consoleErrors.length === 0, JSON.stringify(consoleErrors));
  await browser.close();
  finish({ videos: later });
})().catch((err) => {
  require('./check.cjs').check('unexpected error', false, err && err.stack ? err.stack : err);
  require('./check.cjs').finish();
});
