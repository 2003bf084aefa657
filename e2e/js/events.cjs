// A short openvidu-browser session for the events test: two pages join and
// publish (so they subscribe to each other), the first sends a signal, the
// second leaves, then the application closes the session through the REST
// API. Prints the ids the test needs to check the webhook's events.
'use strict';

const { chromium } = require('playwright-core');
const { OpenVidu } = require('openvidu-node-client');
const { check, finish, env } = require('./check.cjs');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const url = env('CHORUS_URL');
  const ov = new OpenVidu(url, env('CHORUS_SECRET'));
  const session = await ov.createSession({ customSessionId: 'events_' + Math.random().toString(36).slice(2, 8) });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true }); // the proxy's self-signed mode
  const pages = [];
  const ids = [];
  for (let i = 0; i < 2; i++) {
    const page = await context.newPage();
    await page.goto(url + '/');
    await page.waitForFunction(() => !!window.chorusDemo && typeof OpenVidu === 'function');
    const conn = await session.createConnection({ data: 'server-' + i });
    ids.push(await page.evaluate(([token, name]) => window.chorusDemo.join(token, name), [conn.token, 'page' + i]));
    pages.push(page);
  }
  // Wait until both decode each other: every subscription is established.
  let ready = false;
  for (let t = 0; t < 60 && !ready; t++) {
    const v = await Promise.all(pages.map((p) => p.evaluate(() => window.chorusDemo.videos())));
    ready = v.every((vs) => vs.length === 1 && vs[0].frames > 0);
    if (!ready) await sleep(500);
  }
  check('both pages receive video', ready, '');
  await pages[0].evaluate(() => new Promise((resolve, reject) => {
    window.chorusDemo.session().signal({ data: 'hello', type: 'chat' }).then(resolve, reject);
  }));
  // The signal's promise settles once the server committed it (and its
  // signalSent). The second page leaves; the session is closed only once the
  // server has seen it go, so its participantLeft comes first.
  await pages[1].evaluate(() => window.chorusDemo.leave());
  let gone = false;
  for (let t = 0; t < 100 && !gone; t++) {
    await session.fetch();
    gone = !session.activeConnections.some((c) => c.connectionId === ids[1]);
    if (!gone) await sleep(100);
  }
  check('the second page has left before the session closes', gone, ids[1]);
  await session.close();
  await sleep(500);
  await browser.close();
  finish({ sessionId: session.sessionId, connections: ids });
})().catch((err) => {
  require('./check.cjs').check('unexpected error', false, err && err.stack ? err.stack : err);
  require('./check.cjs').finish();
});
