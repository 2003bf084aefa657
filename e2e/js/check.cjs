// Tiny assertion log shared by the end-to-end scripts: every check is
// recorded, the script prints them as JSON and exits 1 if one failed.
'use strict';

const results = [];

function check(name, ok, detail) {
  results.push({ name, ok: !!ok, detail: detail === undefined ? '' : String(detail) });
}

// expectStatus runs an openvidu-node-client call that must fail with an HTTP
// status (node-client rejects with Error(String(status))).
async function expectStatus(name, promise, status) {
  try {
    await promise;
    check(name, false, 'resolved, expected HTTP ' + status);
  } catch (err) {
    const got = err && err.message;
    check(name, got === String(status), 'got ' + got + ', expected ' + status);
  }
}

function finish(extra) {
  const failed = results.filter((r) => !r.ok);
  process.stdout.write(JSON.stringify({ results, failed: failed.length, ...(extra || {}) }) + '\n');
  process.exit(failed.length ? 1 : 0);
}

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error('missing environment variable ' + name);
  return v;
}

module.exports = { check, expectStatus, finish, env };
