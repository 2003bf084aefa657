// The official openvidu-node-client against a Chorus cluster: sessions and
// connections created, listed, fetched, updated and closed, and every error
// case answering OpenVidu's status.
'use strict';

const { OpenVidu } = require('openvidu-node-client');
const { check, expectStatus, finish, env } = require('./check.cjs');

(async () => {
  const url = env('CHORUS_URL');
  const secret = env('CHORUS_SECRET');
  const ov = new OpenVidu(url, secret);
  const suffix = Math.random().toString(36).slice(2, 8);

  const generated = await ov.createSession();
  check('generated session id', /^ses_[A-Z][A-Za-z0-9]{9}$/.test(generated.sessionId), generated.sessionId);

  const custom = await ov.createSession({ customSessionId: 'node_' + suffix, forcedVideoCodec: 'VP8', allowTranscoding: false });
  check('custom session id', custom.sessionId === 'node_' + suffix, custom.sessionId);
  check('session properties', custom.properties.mediaMode === 'ROUTED' && custom.properties.recordingMode === 'MANUAL', JSON.stringify(custom.properties));

  const again = await ov.createSession({ customSessionId: 'node_' + suffix });
  check('existing custom id resolves (409 then fetch)', again.sessionId === custom.sessionId, again.sessionId);

  const mod = await custom.createConnection({ role: 'MODERATOR', data: 'alice', record: false });
  check('pending connection', mod.status === 'pending' && mod.role === 'MODERATOR' && mod.serverData === 'alice' && mod.connectionProperties.record === false,
    JSON.stringify({ status: mod.status, props: mod.connectionProperties }));
  const ws = url.startsWith('https:') ? 'wss' : 'ws'; // the proxy's TLS gives wss:// tokens
  // Tokens carry the cluster's public URL: the host the tests reach it at.
  const host = new URL(url).hostname.replace(/\./g, '\\.');
  check('token format', new RegExp('^' + ws + '://' + host + ':\\d+\\?sessionId=node_' + suffix + '&token=tok_[A-Za-z0-9]{24}&edition=pro$').test(mod.token), mod.token);
  check('connection id', /^con_[A-Za-z0-9]{10}$/.test(mod.connectionId), mod.connectionId);

  const sub = await custom.createConnection({ role: 'SUBSCRIBER', customIceServers: [{ url: 'stun:stun.example.org:3478' }] });
  check('subscriber connection', sub.role === 'SUBSCRIBER' && sub.connectionProperties.customIceServers.length === 1,
    JSON.stringify(sub.connectionProperties.customIceServers));

  const token = await custom.generateToken({ role: 'PUBLISHER', data: 'legacy' });
  check('deprecated generateToken', token.startsWith(ws + '://' + new URL(url).hostname + ':') && token.includes('token=tok_'), token);

  const changed = await custom.fetch();
  check('fetch sees three pending connections', custom.connections.length === 3 && custom.activeConnections.length === 0,
    custom.connections.length + ' connections, changed=' + changed);

  // Application servers read the edition from the token URL (openvidu-call:
  // new URL(token).searchParams.get('edition').toUpperCase()): every token
  // source carries it.
  const editionOf = (t) => new URL(t).searchParams.get('edition');
  const sources = { 'POST /connection': mod.token, 'POST /tokens': token, 'connection objects': custom.connections.map((c) => c.token) };
  for (const [source, tokens] of Object.entries(sources)) {
    const list = [].concat(tokens);
    check('edition in tokens from ' + source, list.length > 0 && list.every((t) => editionOf(t) === 'pro' && editionOf(t).toUpperCase() === 'PRO'), JSON.stringify(list));
  }

  await ov.fetch();
  const ids = ov.activeSessions.map((s) => s.sessionId);
  check('OpenVidu.fetch lists both sessions', ids.includes(generated.sessionId) && ids.includes(custom.sessionId), JSON.stringify(ids));

  const updated = await custom.updateConnection(sub.connectionId, { role: 'PUBLISHER', record: true });
  check('updateConnection', updated.connectionProperties.role === 'PUBLISHER' && updated.connectionProperties.record === true,
    JSON.stringify(updated.connectionProperties));

  await custom.forceDisconnect(mod.connectionId);
  await custom.fetch();
  check('forceDisconnect revokes a pending token', !custom.connections.some((c) => c.connectionId === mod.connectionId), custom.connections.length);

  // Errors, with OpenVidu's statuses.
  await expectStatus('invalid customSessionId', ov.createSession({ customSessionId: 'has space' }), 400);
  await expectStatus('wrong secret', new OpenVidu(url, 'WRONG_SECRET').createSession(), 401);
  await expectStatus('unknown role', custom.createConnection({ role: 'KING' }), 400);
  await expectStatus('forceDisconnect unknown connection', custom.forceDisconnect('con_nobody'), 404);
  await expectStatus('forceUnpublish in a session nobody joined', custom.forceUnpublish('str_CAM_AAAA_con_nobody'), 404);
  await expectStatus('updateConnection unknown connection', custom.updateConnection('con_nobody', { role: 'PUBLISHER' }), 404);

  const ghost = await ov.createSession({ customSessionId: 'ghost_' + suffix });
  await ghost.close();
  await expectStatus('close a closed session', ghost.close(), 404);
  await expectStatus('fetch a closed session', ghost.fetch(), 404);
  await expectStatus('connection in a closed session', ghost.createConnection(), 404);
  await expectStatus('token in a closed session', ghost.generateToken(), 404);

  await custom.close();
  await generated.close();
  await ov.fetch();
  const left = ov.activeSessions.map((s) => s.sessionId).filter((id) => id === custom.sessionId || id === generated.sessionId);
  check('closed sessions are gone', left.length === 0, JSON.stringify(left));
  finish();
})().catch((err) => {
  require('./check.cjs').check('unexpected error', false, err && err.stack ? err.stack : err);
  require('./check.cjs').finish();
});
