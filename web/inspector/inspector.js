// The Chorus Inspector: the cluster's web console, served by the proxy at
// /inspector (proxy/inspector.go). It talks only to its own origin:
//
//   POST /inspector/login {secret}   sets an HttpOnly session cookie (the
//                                    secret is not kept in the page)
//   GET  /inspector/cluster          the masters and their health
//   ANY  /inspector/api/...          the OpenVidu REST API, authenticated by the cookie
//   GET  /inspector/events           the cluster's events, live (server-sent events)
//
// Every change carries X-Chorus-Inspector: 1 (the proxy refuses changes
// without it) and asks for confirmation first. Vanilla JS; uPlot draws the
// load chart.
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const CHART_SECONDS = 300; // load per node over the last 5 minutes
  const MAX_EVENTS = 300;

  const state = {
    masters: new Map(), // incarnation id -> {id, master, status, startedAt}; kept DOWN once gone
    nodes: [],
    sessions: [],
    recordings: null, // null: recording is off (501)
    provider: '',
    events: [], // newest first: {name, at, body}
    openSession: null,
    load: { times: [], byNode: new Map() }, // chart data
    chart: null,
    feed: null,
    timer: null,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  async function call(method, path, body) {
    const opts = { method, headers: {}, credentials: 'same-origin' };
    if (method !== 'GET') opts.headers['X-Chorus-Inspector'] = '1';
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    if (r.status === 401) {
      showLogin();
      throw new Error('not logged in');
    }
    return r;
  }

  async function getJSON(path) {
    const r = await call('GET', path);
    if (r.status === 501) return null; // a feature that is off (recording)
    if (!r.ok) throw new Error(path + ': ' + r.status);
    return r.json();
  }

  // act runs a change after confirmation and reports its outcome.
  async function act(question, method, path) {
    if (!window.confirm(question)) return;
    try {
      const r = await call(method, path);
      if (!r.ok) {
        let msg = r.status + '';
        try { const b = await r.json(); msg += ' ' + (b.message || b.error || ''); } catch (e) { /* no body */ }
        setStatus('Failed: ' + msg, true);
      } else {
        setStatus('Done: ' + method + ' ' + path.replace('/inspector/api', ''));
      }
    } catch (e) {
      setStatus('Failed: ' + e.message, true);
    }
    refresh();
  }

  function setStatus(text, error) {
    const s = $('status');
    s.textContent = text;
    s.className = error ? 'error' : '';
  }

  // Login and logout.

  function showLogin() {
    stop();
    $('login').hidden = false;
    $('app').hidden = true;
    $('logout').hidden = true;
    $('secret').focus();
  }

  function showApp() {
    $('login').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = false;
    start();
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('secret');
    const secret = input.value;
    input.value = ''; // the secret does not stay in the page
    $('login-error').textContent = '';
    const r = await fetch('/inspector/login', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ secret }),
    });
    if (r.status === 204) {
      showApp();
      return;
    }
    let msg = 'Login failed (' + r.status + ')';
    if (r.status === 401) msg = 'Wrong secret';
    if (r.status === 429) msg = 'Too many attempts: wait a minute';
    $('login-error').textContent = msg;
  });

  $('logout').addEventListener('click', async () => {
    await fetch('/inspector/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-Chorus-Inspector': '1' } });
    state.masters.clear();
    state.events = [];
    $('events').replaceChildren();
    showLogin();
  });

  $('launch').addEventListener('click', () => act('Launch a new media node?', 'POST', '/inspector/api/media-nodes'));

  // Refreshing.

  function start() {
    stop();
    refresh();
    state.timer = setInterval(refresh, REFRESH_MS);
    openFeed();
  }

  function stop() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    if (state.feed) state.feed.close();
    state.feed = null;
  }

  async function refresh() {
    const [cluster, nodes, sessions, recordings, config] = await Promise.allSettled([
      getJSON('/inspector/cluster'),
      getJSON('/inspector/api/media-nodes?sessions=true'),
      getJSON('/inspector/api/sessions'),
      getJSON('/inspector/api/recordings'),
      state.provider ? Promise.resolve(null) : getJSON('/inspector/api/config'),
    ]);
    if ($('app').hidden) return;
    if (config.status === 'fulfilled' && config.value) state.provider = config.value.OPENVIDU_PRO_CLUSTER_ENVIRONMENT || '';
    if (cluster.status === 'fulfilled') updateMasters(cluster.value);
    if (nodes.status === 'fulfilled') { state.nodes = nodes.value.content || []; recordLoad(); }
    if (sessions.status === 'fulfilled') state.sessions = sessions.value.content || [];
    if (recordings.status === 'fulfilled') state.recordings = recordings.value ? recordings.value.items || [] : null;
    const failed = [cluster, nodes, sessions].filter((r) => r.status === 'rejected');
    if (failed.length) setStatus('Refresh failed: ' + failed[0].reason.message, true);
    else if ($('status').className === 'error' && $('status').textContent.startsWith('Refresh')) setStatus('');
    render();
  }

  function updateMasters(cluster) {
    const seen = new Set();
    for (const m of cluster.masters) {
      seen.add(m.id);
      state.masters.set(m.id, m);
    }
    for (const [id, m] of state.masters) {
      // A master that left the registry crashed (declared by its peers) or
      // stopped: keep it, DOWN, so that the operator sees it went.
      if (!seen.has(id) && m.status !== 'DOWN') state.masters.set(id, Object.assign({}, m, { status: 'DOWN' }));
    }
  }

  function recordLoad() {
    const now = Date.now() / 1000;
    const load = state.load;
    load.times.push(now);
    for (const n of state.nodes) {
      if (!load.byNode.has(n.id)) load.byNode.set(n.id, load.times.slice(0, -1).map(() => null));
    }
    for (const [id, values] of load.byNode) {
      const n = state.nodes.find((x) => x.id === id);
      values.push(n ? n.load : null);
    }
    while (load.times.length && load.times[0] < now - CHART_SECONDS) {
      load.times.shift();
      for (const values of load.byNode.values()) values.shift();
    }
  }

  // Rendering.

  function render() {
    renderMasters();
    renderNodes();
    renderChart();
    renderSessions();
    renderSessionDetail();
  }

  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 120) return s + ' s';
    if (s < 7200) return Math.floor(s / 60) + ' min';
    return Math.floor(s / 3600) + ' h';
  }

  function renderMasters() {
    const rows = [...state.masters.values()].sort((a, b) => a.id.localeCompare(b.id)).map((m) =>
      el('tr', { dataset: { masterId: m.id, master: m.master, status: m.status } },
        el('td', {}, m.master), el('td', {}, m.id),
        el('td', { class: 'status-' + m.status }, m.status),
        el('td', {}, m.status !== 'DOWN' && m.startedAt ? duration(Date.now() - m.startedAt) : '')));
    $('masters').replaceChildren(...rows);
  }

  function renderNodes() {
    const rows = state.nodes.map((n) => {
      const sessions = (n.sessions || []).length;
      const drop = (strategy, label, question) => el('button', {
        dataset: { action: 'drop-' + strategy, node: n.id },
        onclick: () => act(question, 'DELETE', '/inspector/api/media-nodes/' + encodeURIComponent(n.id) + '?deletion-strategy=' + strategy),
      }, label);
      return el('tr', { dataset: { nodeId: n.id, status: n.status, sessions: sessions } },
        el('td', {}, n.id), el('td', { class: 'status-' + n.status }, n.status),
        el('td', {}, (n.load || 0).toFixed(1) + ' %'), el('td', {}, sessions), el('td', {}, state.provider),
        el('td', {},
          drop('migrate', 'Drain (migrate sessions)', 'Move every session of ' + n.id + ' to another media node, then stop it?'),
          ' ', drop('when-no-sessions', 'When idle', 'Stop ' + n.id + ' once its sessions end?'),
          ' ', drop('if-no-sessions', 'If idle', 'Stop ' + n.id + ' now if it has no session?'),
          ' ', drop('now', 'Now', 'Stop ' + n.id + ' now, closing its sessions?')));
    });
    $('nodes').replaceChildren(...rows);
  }

  function renderChart() {
    if (typeof uPlot !== 'function') return;
    const load = state.load;
    const ids = [...load.byNode.keys()];
    const key = ids.join(',');
    const data = [load.times, ...ids.map((id) => load.byNode.get(id))];
    const width = Math.max(300, $('chart').clientWidth || 600);
    if (!state.chart || state.chart.key !== key) {
      if (state.chart) state.chart.plot.destroy();
      const palette = ['#1a73e8', '#e8710a', '#188038', '#a142f4', '#d93025', '#12b5cb'];
      const plot = new uPlot({
        width, height: 180, title: 'Load per media node (%)',
        // The last CHART_SECONDS up to the newest sample, however few.
        scales: { x: { time: true, range: (u, min, max) => [max - CHART_SECONDS, max] }, y: { range: [0, 100] } },
        series: [{}, ...ids.map((id, i) => ({ label: id, stroke: palette[i % palette.length], spanGaps: false }))],
      }, data, $('chart'));
      state.chart = { plot, key };
    } else {
      state.chart.plot.setData(data);
    }
  }

  function connectionsOf(s) { return (s.connections && s.connections.content) || []; }

  function renderSessions() {
    const rows = state.sessions.map((s) => {
      const conns = connectionsOf(s).filter((c) => c.status === 'active');
      const streams = conns.reduce((n, c) => n + (c.publishers || []).length, 0);
      const recs = state.recordings === null ? 'off' :
        state.recordings.filter((r) => r.sessionId === s.sessionId).map((r) => r.id + ' (' + r.status + ')').join(', ') || 'none';
      return el('tr', { dataset: { sessionId: s.sessionId, node: s.mediaNodeId || '', participants: conns.length } },
        el('td', {}, s.sessionId), el('td', { class: 'node' }, s.mediaNodeId || '-'), el('td', {}, conns.length), el('td', {}, streams),
        el('td', {}, recs),
        el('td', {},
          el('button', { dataset: { action: 'open', session: s.sessionId }, onclick: () => { state.openSession = s.sessionId; render(); } }, 'Open'),
          ' ', el('button', {
            dataset: { action: 'close', session: s.sessionId },
            onclick: () => act('Close session ' + s.sessionId + ' for every participant?', 'DELETE', '/inspector/api/sessions/' + encodeURIComponent(s.sessionId)),
          }, 'Close')));
    });
    $('sessions').replaceChildren(...rows);
  }

  function renderSessionDetail() {
    const box = $('session-detail');
    const s = state.sessions.find((x) => x.sessionId === state.openSession);
    if (!s) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const conns = connectionsOf(s).map((c) => el('li', { dataset: { connectionId: c.connectionId } },
      c.connectionId + ' ' + c.status + ' ' + (c.role || '') + (c.clientData ? ' ' + c.clientData : '') + (c.ip ? ' from ' + c.ip : '') +
        ' - publishes ' + (c.publishers || []).length + ', subscribes to ' + (c.subscribers || []).length + ' ',
      el('button', {
        dataset: { action: 'disconnect', connection: c.connectionId },
        onclick: () => act('Disconnect ' + c.connectionId + '?', 'DELETE',
          '/inspector/api/sessions/' + encodeURIComponent(s.sessionId) + '/connection/' + encodeURIComponent(c.connectionId)),
      }, 'Disconnect')));
    const timeline = state.events.filter((e) => e.body.sessionId === s.sessionId).slice().reverse()
      .map((e) => el('li', {}, new Date(e.at).toISOString().slice(11, 23) + ' ' + e.name + describe(e.body)));
    box.replaceChildren(
      el('h3', {}, 'Session ' + s.sessionId + ' on ' + (s.mediaNodeId || '-') + ' ', el('button', { onclick: () => { state.openSession = null; render(); } }, 'Close view')),
      el('ul', {}, ...conns),
      el('h4', {}, 'Timeline (since this page opened)'),
      el('ol', { dataset: { testid: 'timeline' } }, ...timeline));
  }

  function describe(body) {
    const parts = [];
    for (const k of ['connectionId', 'streamId', 'reason', 'id', 'status', 'mediaNodeId', 'newStatus', 'environmentId']) {
      if (body[k] !== undefined && body[k] !== null && body[k] !== '') parts.push(k + '=' + body[k]);
    }
    return parts.length ? ' ' + parts.join(' ') : '';
  }

  // The live feed.

  function openFeed() {
    const feed = new EventSource('/inspector/events');
    state.feed = feed;
    const onEvent = (ev) => {
      let body = {};
      try { body = JSON.parse(ev.data); } catch (e) { /* not JSON */ }
      const at = Date.now();
      state.events.unshift({ name: ev.type, at, body });
      if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
      const item = el('li', { dataset: { event: ev.type, session: body.sessionId || '', shownAt: at, emittedAt: body.timestamp || '' } },
        new Date(at).toISOString().slice(11, 23) + ' ' + ev.type + (body.sessionId ? ' ' + body.sessionId : '') + describe(body));
      const list = $('events');
      list.prepend(item);
      while (list.children.length > MAX_EVENTS) list.lastChild.remove();
      if (body.sessionId && body.sessionId === state.openSession) renderSessionDetail();
    };
    // Every OpenVidu and Chorus event name the cluster emits.
    for (const name of ['sessionCreated', 'sessionDestroyed', 'participantJoined', 'participantLeft', 'webrtcConnectionCreated',
      'webrtcConnectionDestroyed', 'recordingStatusChanged', 'filterEventDispatched', 'signalSent', 'mediaNodeStatusChanged',
      'autoscaling', 'nodeCrashed', 'nodeRecovered', 'broadcastStarted', 'broadcastStopped']) {
      feed.addEventListener(name, onEvent);
    }
    feed.onmessage = onEvent;
    feed.onerror = () => setStatus('Event feed interrupted: reconnecting', true);
    feed.onopen = () => { if ($('status').textContent.startsWith('Event feed')) setStatus(''); };
  }

  // At load: logged in already (the cookie) or not.
  fetch('/inspector/cluster', { credentials: 'same-origin' }).then((r) => (r.ok ? showApp() : showLogin()), showLogin);
}());
