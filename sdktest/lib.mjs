// Shared by the SDK scripts: each script prints one JSON object per line
// ("step" names it) for internal/server/sdk_test.go to check, and exits
// non-zero on an unexpected error. Scripts never print the keyhole token.
import dns from 'node:dns';
import http from 'node:http';

export function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
}

export function out(step, fields = {}) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + '\n');
}

// Host routing without /etc/hosts (SPEC §3.1 --host-suffix): names under
// .localhost resolve to the loopback address, as RFC 6761 §6.3 says they
// should — curl and browsers do it on their own, Node's resolver does not.
// Every other name resolves as usual.
export function localhostLookup(hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  }
  if (hostname === 'localhost' || hostname.endsWith('.localhost')) {
    if (options && options.all) return callback(null, [{ address: '127.0.0.1', family: 4 }]);
    return callback(null, '127.0.0.1', 4);
  }
  return dns.lookup(hostname, options, callback);
}

export const localhostAgent = new http.Agent({ keepAlive: true, lookup: localhostLookup });

export async function main(fn) {
  try {
    await fn();
    // Idle keep-alive sockets would keep the process alive until the
    // server closes them.
    localhostAgent.destroy();
  } catch (err) {
    out('fatal', { error: String(err && err.message ? err.message : err), status: err && err.status });
    process.exit(1);
  }
}
