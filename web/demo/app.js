// Chorus demo: an OpenVidu 2 application like any other. The page asks its
// backend (POST /demo/token, served by the proxy) for a token, then joins with
// openvidu-browser, publishes the camera and shows everybody else.
//
// window.chorusDemo is the page's small API for the end-to-end tests: join
// with a given token, read every remote video's size and decoded frames, the
// session events seen so far, the ICE candidate pairs in use and how long
// joining took.
'use strict';

const demo = {
  session: null,
  publisher: null,
  events: [],
  // When the last join started, connected and published, and when each
  // remote video decoded its first frame (ms since the epoch).
  timings: null,
};

// Events worth telling the user about; the others only go to the log.
const shown = {
  published: () => 'In session "' + demo.session.sessionId + '": ' + (demo.session.remoteConnections.size) + ' other participant(s)',
  reconnecting: () => 'Connection lost, reconnecting...',
  reconnected: () => 'Reconnected',
  sessionDisconnected: (d) => 'Disconnected (' + d + ')',
  error: (d) => 'Error: ' + d,
  left: () => 'Not connected',
};

function log(type, detail) {
  demo.events.push({ type, detail: detail || '', at: Date.now() });
  const text = shown[type] || (demo.publisher && (type === 'streamCreated' || type === 'connectionDestroyed') ? shown.published : null);
  if (text) document.getElementById('status').textContent = text(detail || '');
}

// The demo backend serves only its own sessions, whose ids start with demo_.
const SESSION_PREFIX = 'demo_';

async function fetchToken(room) {
  const res = await fetch('/demo/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sessionId: SESSION_PREFIX + room }),
  });
  if (!res.ok) throw new Error('token request failed: ' + res.status + ' ' + (await res.text()));
  return (await res.json()).token;
}

function tile(id, label) {
  const el = document.createElement('section');
  el.className = 'tile';
  el.id = id;
  const span = document.createElement('span');
  span.className = 'label';
  span.textContent = label;
  el.appendChild(span);
  document.getElementById('remotes').appendChild(el);
  return el;
}

function nameOf(connection) {
  try { return JSON.parse(connection.data.split('%/%')[0]).clientData; } catch (e) { return connection.connectionId; }
}

// watchFirstFrame records when a remote video decodes its first frame, and
// the steps of its subscription before that (timings.subscriptions): when
// its peer connection had the server's offer (prepareReceiveVideoFrom
// answered), its own answer (sent with receiveVideoFrom), started its ICE
// checks, connected ICE and then DTLS. Checked every 10 ms, for two minutes
// at most.
function watchFirstFrame(video, connectionId, subscriber) {
  const timings = demo.timings;
  const steps = timings.subscriptions[connectionId] || (timings.subscriptions[connectionId] = {});
  const started = Date.now();
  const timer = setInterval(() => {
    const pc = subscriber.stream && subscriber.stream.getWebRtcPeer && subscriber.stream.getWebRtcPeer() ? subscriber.stream.getRTCPeerConnection() : null;
    if (pc) {
      const now = Date.now();
      if (!steps.offerAt && pc.remoteDescription) steps.offerAt = now;
      if (!steps.answerAt && pc.localDescription) steps.answerAt = now;
      if (!steps.checkingAt && pc.iceConnectionState !== 'new') steps.checkingAt = now;
      if (!steps.iceConnectedAt && (pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed')) steps.iceConnectedAt = now;
      if (!steps.connectedAt && pc.connectionState === 'connected') steps.connectedAt = now;
    }
    const frames = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : 0;
    if (frames > 0 && !timings.firstFrames[connectionId]) timings.firstFrames[connectionId] = Date.now();
    if (frames > 0 || Date.now() - started > 120000) clearInterval(timer);
  }, 10);
}

// join connects to the session with token and publishes the camera
// (options.publish false: a viewer, which only subscribes).
// options.iceTransportPolicy ('relay': TURN only) goes to openvidu-browser's
// advanced configuration, which it gives every RTCPeerConnection.
async function join(token, name, debug, options) {
  demo.timings = { joinStartedAt: Date.now(), connectedAt: 0, publishStartedAt: 0, publishedAt: 0, firstFrames: {}, subscriptions: {} };
  const OV = new OpenVidu();
  if (!debug) OV.enableProdMode();
  if (options && options.iceTransportPolicy) {
    OV.setAdvancedConfiguration({ rtcConfiguration: { iceTransportPolicy: options.iceTransportPolicy } });
  }
  const session = OV.initSession();
  demo.session = session;
  session.on('streamCreated', (event) => {
    const el = tile('tile-' + event.stream.streamId, nameOf(event.stream.connection));
    demo.timings.subscriptions[event.stream.connection.connectionId] = { subscribedAt: Date.now() };
    const subscriber = session.subscribe(event.stream, el, { insertMode: 'APPEND' });
    subscriber.on('videoElementCreated', (e) => {
      e.element.dataset.connectionId = event.stream.connection.connectionId;
      watchFirstFrame(e.element, event.stream.connection.connectionId, subscriber);
    });
    log('streamCreated', event.stream.streamId);
  });
  session.on('streamDestroyed', (event) => {
    const el = document.getElementById('tile-' + event.stream.streamId);
    if (el) el.remove();
    log('streamDestroyed', event.reason);
  });
  session.on('connectionDestroyed', (event) => log('connectionDestroyed', event.reason));
  session.on('recordingStarted', (event) => log('recordingStarted', event.id));
  session.on('recordingStopped', (event) => log('recordingStopped', event.id + ' ' + event.reason));
  session.on('reconnecting', () => log('reconnecting'));
  session.on('reconnected', () => log('reconnected'));
  session.on('sessionDisconnected', (event) => log('sessionDisconnected', event.reason));
  // OpenVidu Pro's network quality (detail: "<connectionId> <old> <new>").
  session.on('networkQualityLevelChanged', (event) =>
    log('networkQualityLevelChanged', event.connection.connectionId + ' ' + event.oldValue + ' ' + event.newValue));
  // The stream an exception is about (ICE_CONNECTION_DISCONNECTED names
  // the broken peer connection's stream): tests time recoveries by it.
  session.on('exception', (event) => log('exception', event.name + (event.origin && event.origin.streamId ? ' ' + event.origin.streamId : '')));
  await session.connect(token, { clientData: name });
  demo.timings.connectedAt = Date.now();
  log('connected', session.connection.connectionId);
  if (options && options.publish === false) return session.connection.connectionId; // a viewer
  const publisher = await OV.initPublisherAsync('local', {
    insertMode: 'APPEND', resolution: (options && options.resolution) || '640x480', frameRate: 30, mirror: false,
  });
  demo.publisher = publisher;
  demo.timings.publishStartedAt = Date.now();
  await session.publish(publisher);
  demo.timings.publishedAt = Date.now();
  log('published', publisher.stream.streamId);
  return session.connection.connectionId;
}

function leave() {
  if (demo.session) demo.session.disconnect();
  demo.session = null;
  document.getElementById('remotes').innerHTML = '';
  const local = document.getElementById('local');
  local.querySelectorAll('video').forEach((v) => v.remove());
  log('left');
}

// videos reports every remote video: its connection, size and decoded frames.
function videos() {
  return Array.from(document.querySelectorAll('#remotes video')).map((v) => ({
    connectionId: v.dataset.connectionId || '',
    width: v.videoWidth,
    height: v.videoHeight,
    frames: v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
  }));
}

// Frame tracking, for tests measuring media interruptions: the times at
// which each remote video's decoded frame count changed, sampled every 40 ms
// once trackFrames() is called.
const frameLog = new Map();
let tracking = null;

function trackFrames() {
  if (tracking) return;
  tracking = setInterval(() => {
    document.querySelectorAll('#remotes video').forEach((v) => {
      const n = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
      let rec = frameLog.get(v);
      if (!rec) {
        rec = { last: n, times: [] };
        frameLog.set(v, rec);
      }
      // A decoded frame is an increase; a counter that went back (a new
      // stream in the element) is a new baseline, not a frame.
      if (n > rec.last) {
        rec.times.push(Date.now());
        if (rec.times.length > 5000) rec.times.shift();
      }
      rec.last = n;
    });
  }, 40);
}

// frameGaps reports, for every remote video, the longest time without a new
// frame since `since` (ms since the epoch; a stall still going on counts up
// to now) and when its latest frame came.
function frameGaps(since) {
  const now = Date.now();
  return Array.from(document.querySelectorAll('#remotes video')).map((v) => {
    const times = (frameLog.get(v) || { times: [] }).times;
    let prev = null;
    let maxGap = 0;
    let gapEnd = 0; // the frame that ended the longest gap (0: still going on)
    for (const t of times) {
      if (t >= since && prev !== null && t - prev > maxGap) {
        maxGap = t - prev;
        gapEnd = t;
      }
      prev = t;
    }
    if (prev !== null && now - Math.max(prev, since) > maxGap) {
      maxGap = now - Math.max(prev, since);
      gapEnd = 0;
    }
    const after = times.find((t) => t > since);
    return { connectionId: v.dataset.connectionId || '', maxGapMs: maxGap, gapEndAt: gapEnd, lastFrameAt: prev || 0, firstFrameAfter: after || 0 };
  });
}

// peerConnections lists the page's stream managers (its publisher first,
// then one per subscription) with their peer connections.
function peerConnections() {
  const managers = [];
  if (demo.publisher) managers.push(demo.publisher);
  if (demo.session) demo.session.streamManagers.forEach((m) => { if (!managers.includes(m)) managers.push(m); });
  return managers
    // A subscription's peer connection exists once its negotiation has
    // begun: before that getRTCPeerConnection() throws (it reads
    // stream.webRtcPeer.pc), so such a stream is left out for now.
    .map((m) => ({ m, pc: m.stream && m.stream.getWebRtcPeer && m.stream.getWebRtcPeer() ? m.stream.getRTCPeerConnection() : null }))
    .filter((e) => e.pc);
}

// transports reports, for each peer connection (the publisher's and one per
// subscription), the ICE candidate pair in use, from getStats(): each end's
// protocol (udp or tcp), candidate type, address, port, TCP type and, for a
// relayed candidate, the protocol to its TURN server (relayProtocol).
async function transports() {
  const out = [];
  for (const { m, pc } of peerConnections()) {
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
    });
    if (!pair) stats.forEach((r) => { if (!pair && r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
    const end = (id) => {
      const c = id && stats.get(id);
      return c ? { protocol: c.protocol, candidateType: c.candidateType, address: c.address, port: c.port, tcpType: c.tcpType || '', relayProtocol: c.relayProtocol || '' } : null;
    };
    out.push({
      streamId: m.stream.streamId,
      kind: m === demo.publisher ? 'publisher' : 'subscriber',
      iceState: pc.iceConnectionState,
      local: pair ? end(pair.localCandidateId) : null,
      remote: pair ? end(pair.remoteCandidateId) : null,
    });
  }
  return out;
}

// videoStats reports the video RTP statistics of each peer connection
// from getStats(): what a subscription decodes (inbound-rtp: frame size,
// frames decoded and dropped, freezes, keyframes, PLIs) and what the
// publisher sends per simulcast encoding (outbound-rtp: rid, frame size,
// bytes, whether the browser keeps it active).
async function videoStats() {
  const out = [];
  for (const { m, pc } of peerConnections()) {
    const stats = await pc.getStats();
    const rtp = [];
    stats.forEach((r) => {
      if (r.kind !== 'video' || (r.type !== 'inbound-rtp' && r.type !== 'outbound-rtp')) return;
      rtp.push({
        type: r.type, rid: r.rid || '', width: r.frameWidth || 0, height: r.frameHeight || 0,
        bytes: r.bytesReceived || r.bytesSent || 0, active: r.active !== false,
        framesDecoded: r.framesDecoded || 0, framesDropped: r.framesDropped || 0, keyFramesDecoded: r.keyFramesDecoded || 0,
        freezeCount: r.freezeCount || 0, totalFreezesDuration: r.totalFreezesDuration || 0, pliCount: r.pliCount || 0,
        qualityLimitationReason: r.qualityLimitationReason || '',
        codec: (r.codecId && stats.get(r.codecId) && stats.get(r.codecId).mimeType) || '',
      });
    });
    out.push({ streamId: m.stream.streamId, kind: m === demo.publisher ? 'publisher' : 'subscriber',
      connectionId: m.stream.connection ? m.stream.connection.connectionId : '', rtp });
  }
  return out;
}

window.chorusDemo = {
  videoStats,
  join,
  leave,
  videos,
  trackFrames,
  frameGaps,
  transports,
  timings: () => JSON.parse(JSON.stringify(demo.timings)),
  events: () => demo.events.slice(),
  connectionId: () => (demo.session && demo.session.connection ? demo.session.connection.connectionId : ''),
  session: () => demo.session,
};

document.getElementById('name').value = 'guest-' + Math.random().toString(36).slice(2, 6);
document.getElementById('join').addEventListener('submit', async (e) => {
  e.preventDefault();
  const button = e.target.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const token = await fetchToken(document.getElementById('session').value);
    await join(token, document.getElementById('name').value);
    document.getElementById('leave').disabled = false;
  } catch (err) {
    log('error', String(err && err.message ? err.message : err));
    button.disabled = false;
  }
});
document.getElementById('leave').addEventListener('click', () => {
  leave();
  document.getElementById('leave').disabled = true;
  document.querySelector('#join button[type=submit]').disabled = false;
});
