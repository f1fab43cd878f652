// Readiness probe for the pm2 daemon: `node pm2_probe.js PM2_DIR RPC_SOCK TIMEOUT_S`.
// Prints "armed" once loaded, then "ready" as soon as the daemon answers its `ping`
// RPC on RPC_SOCK (pm2's own axon RPC modules); tries every millisecond, exits by
// itself after TIMEOUT_S seconds. Not imported by the harness.
const fs = require('fs');
const path = require('path');
const [pm2Dir, sock, timeoutS] = process.argv.slice(2);
const axon = require(path.join(pm2Dir, 'modules', 'pm2-axon'));
const rpc = require(path.join(pm2Dir, 'modules', 'pm2-axon-rpc'));
const deadline = Date.now() + Number(timeoutS) * 1000;

function again() {
  if (Date.now() > deadline) process.exit(1);
  setTimeout(attempt, 1);
}

function attempt() {
  if (!fs.existsSync(sock)) return again();
  const req = axon.socket('req');
  const client = new rpc.Client(req);
  let done = false;
  const fail = () => { if (!done) { done = true; req.close(); again(); } };
  req.once('error', fail);
  req.once('reconnect attempt', fail);
  req.once('connect', () => client.call('ping', {}, (err) => {
    if (err) return fail();
    done = true;
    process.stdout.write('ready\n', () => process.exit(0));
  }));
  req.connect(sock);
}

process.stdout.write('armed\n');
attempt();
