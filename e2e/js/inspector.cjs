// The Inspector (/inspector) in headless Chromium, steered by the Go tests
// one command a line on stdin; each answer is one JSON line on stdout:
//   open                   -> {"opened": true}            (loads /inspector/)
//   login <secret>         -> {"loggedIn": bool, "message": "<the page's error message>"}
//   state                  -> {"state": {"login", "status", "masters", "nodes", "sessions", "events", "timeline"}}
//   click <css selector>   -> {"clicked": true}           (accepting the confirmation)
//   fetch <path>           -> {"status": <HTTP status>}   (from the page, with its cookie)
//   screenshot <file>      -> {"screenshot": "<file>"}
//   requests               -> {"requests": [urls]}        (every request the page made)
//   quit                   -> exits
'use strict';

const readline = require('readline');
const { chromium } = require('playwright-core');
const { env } = require('./check.cjs');

const url = env('CHORUS_URL');
const requests = [];

function reply(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

async function state(page) {
  return page.evaluate(() => {
    const rows = (sel) => [...document.querySelectorAll(sel)];
    return {
      login: !document.getElementById('login').hidden,
      app: !document.getElementById('app').hidden,
      status: document.getElementById('status').textContent,
      masters: rows('#masters tr').map((r) => ({ id: r.dataset.masterId, master: r.dataset.master, status: r.dataset.status })),
      nodes: rows('#nodes tr').map((r) => ({ id: r.dataset.nodeId, status: r.dataset.status, sessions: Number(r.dataset.sessions) })),
      sessions: rows('#sessions tr').map((r) => ({ id: r.dataset.sessionId, node: r.dataset.node, participants: Number(r.dataset.participants) })),
      events: rows('#events li').map((li) => ({ name: li.dataset.event, session: li.dataset.session, text: li.textContent,
        shownAt: Number(li.dataset.shownAt), emittedAt: Number(li.dataset.emittedAt || 0) })),
      timeline: rows('[data-testid="timeline"] li').map((li) => li.textContent),
      chart: !!document.querySelector('#chart .uplot'),
    };
  });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  page.on('request', (r) => requests.push(r.url()));
  page.on('dialog', (d) => d.accept()); // the Inspector confirms every change
  page.on('pageerror', (err) => process.stderr.write('page error: ' + err.message + '\n'));
  page.on('console', (msg) => process.stderr.write('inspector ' + msg.type() + ': ' + msg.text() + '\n'));
  reply({ ready: true });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, ...args] = line.trim().split(/\s+/);
    try {
      if (cmd === 'open') {
        await page.goto(url + '/inspector/');
        await page.waitForFunction(() => !document.getElementById('login').hidden || !document.getElementById('app').hidden);
        reply({ opened: true });
      } else if (cmd === 'login') {
        await page.fill('[data-testid="secret"]', args.join(' '));
        await page.click('[data-testid="login-button"]');
        await page.waitForFunction(() => !document.getElementById('app').hidden || document.getElementById('login-error').textContent !== '');
        reply({ loggedIn: await page.evaluate(() => !document.getElementById('app').hidden),
          message: await page.textContent('[data-testid="login-error"]') });
      } else if (cmd === 'state') {
        reply({ state: await state(page) });
      } else if (cmd === 'click') {
        await page.click(args.join(' '));
        reply({ clicked: true });
      } else if (cmd === 'fetch') {
        reply({ status: await page.evaluate(async (p) => (await fetch(p, { credentials: 'same-origin' })).status, args[0]) });
      } else if (cmd === 'screenshot') {
        await page.screenshot({ path: args[0], fullPage: true });
        reply({ screenshot: args[0] });
      } else if (cmd === 'requests') {
        reply({ requests });
      } else if (cmd === 'quit') break;
      else reply({ error: 'unknown command ' + cmd });
    } catch (err) {
      reply({ error: String(err && err.stack ? err.stack : err) });
    }
  }
  await browser.close();
  process.exit(0);
})().catch((err) => { process.stderr.write(String(err && err.stack ? err.stack : err) + '\n'); process.exit(1); });
