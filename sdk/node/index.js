'use strict';
// @softreload/worker runs Node HTTP servers as softreload workers.
//
// The agent binds the listening sockets once and passes them to every
// worker (systemd socket activation: LISTEN_FDS, LISTEN_PID,
// LISTEN_FDNAMES, from fd 3). A worker serves on them, says READY=1 on its
// NOTIFY_SOCKET, and on its stop signal drains: it stops accepting, answers
// the requests in flight with `Connection: close`, closes the keep-alive
// connections that stayed idle, and exits. serve() does all of it around
// Node's own http.Server.

const http = require('node:http');
const net = require('node:net');
const { spawn } = require('node:child_process');

/** The first inherited socket's file descriptor (SD_LISTEN_FDS_START). */
const FIRST_FD = 3;

/** How long a kept-alive connection must stay idle during a drain before it is closed. */
const DEFAULT_IDLE_GRACE_MS = 500;

/**
 * The worker's identity, from the variables the agent sets.
 * @param {NodeJS.ProcessEnv} [env]
 */
function identity(env = process.env) {
  return {
    group: env.SOFTRELOAD_GROUP || '',
    workerId: env.SOFTRELOAD_WORKER_ID || '',
    revision: env.SOFTRELOAD_REVISION || '',
    codeDir: env.SOFTRELOAD_CODE_DIR || '',
  };
}

/**
 * The sockets passed to this process, as sd_listen_fds(3) reads them:
 * none unless LISTEN_PID is this process's pid.
 * @param {NodeJS.ProcessEnv} [env]
 * @param {number} [pid]
 * @returns {{fd: number, name: string}[]}
 */
function listenFds(env = process.env, pid = process.pid) {
  if (env.LISTEN_PID !== String(pid)) {
    return [];
  }
  const count = Number(env.LISTEN_FDS);
  if (!Number.isInteger(count) || count < 1) {
    return [];
  }
  const names = (env.LISTEN_FDNAMES || '').split(':');
  const fds = [];
  for (let i = 0; i < count; i++) {
    fds.push({ fd: FIRST_FD + i, name: names[i] || 'unknown' });
  }
  return fds;
}

// Node has no unix datagram socket in its core library, so a one-shot child
// process sends the datagram. That is sound with softreload: each worker has
// a NOTIFY_SOCKET of its own, so the agent credits whatever arrives on it to
// this worker. perl comes first: Debian and Ubuntu ship it in every image
// (perl-base is Essential), Socket included.
const PERL_NOTIFY = [
  'use Socket;',
  'my $p = $ENV{NOTIFY_SOCKET}; $p =~ s/^@/\\0/;',
  'socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!\\n";',
  'defined(send($s, $ARGV[0], 0, pack_sockaddr_un($p))) or die "sending to $ENV{NOTIFY_SOCKET}: $!\\n";',
].join(' ');

/** The programs notify() tries, in order, with their arguments for a state. */
const notifyHelpers = [
  { command: 'perl', args: (state) => ['-e', PERL_NOTIFY, '--', state] },
  { command: 'systemd-notify', args: (state) => [state] },
];

/**
 * Sends a state (e.g. "READY=1") to NOTIFY_SOCKET, the sd_notify protocol.
 * Resolves to false when there is no NOTIFY_SOCKET (the group's readiness is
 * not Notify), to true once sent; rejects when no helper could send it.
 * @param {string} state
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {Promise<boolean>}
 */
async function notify(state, env = process.env) {
  if (!env.NOTIFY_SOCKET) {
    return false;
  }
  const failures = [];
  for (const helper of notifyHelpers) {
    const result = await run(helper.command, helper.args(state), env);
    if (result.ok) {
      return true;
    }
    failures.push(`${helper.command}: ${result.error}`);
  }
  throw new Error(`cannot send ${state} to NOTIFY_SOCKET ${env.NOTIFY_SOCKET}: Node has no unix datagram ` +
    `socket, and no helper could send it (${failures.join('; ')}); install perl (Debian: perl-base) or ` +
    'systemd-notify (apt-get install systemd), or give the group readiness: {type: Delay}');
}

function run(command, args, env) {
  return new Promise((resolve) => {
    let stderr = '';
    const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (b) => { stderr += b; });
    child.on('error', (err) => resolve({ ok: false, error: err.code === 'ENOENT' ? 'not found' : err.message }));
    child.on('close', (code, signal) => {
      if (code === 0) {
        resolve({ ok: true });
      } else {
        resolve({ ok: false, error: stderr.trim() || `exit ${signal || code}` });
      }
    });
  });
}

/**
 * Serves on the sockets the agent passed, says READY=1, and drains on the
 * stop signal.
 *
 * target is a request listener (an Express app, or (req, res) => ...), from
 * which one http.Server per inherited socket is made, or an http.Server of
 * your own when a single socket is passed.
 *
 * @param {http.RequestListener | http.Server} target
 * @param {object} [options]
 * @param {string[]} [options.names] serve only the sockets of these names (LISTEN_FDNAMES, e.g. "web-0")
 * @param {string} [options.stopSignal] the group's stopSignal (default SIGTERM)
 * @param {number} [options.idleGraceMs] during a drain, how long a kept-alive connection must stay idle before it is closed (default 500)
 * @param {{port: number, host?: string}} [options.alone] where to listen when no socket was passed (running without the agent, in development)
 * @param {() => void} [options.onDrained] called once every connection is closed; default: process.exit(0)
 * @returns {Promise<{servers: http.Server[], drain: () => Promise<void>}>} once listening and READY=1 was sent
 */
async function serve(target, options = {}) {
  const fds = listenFds().filter((f) => !options.names || options.names.includes(f.name));
  const addresses = fds.map((f) => ({ fd: f.fd }));
  if (addresses.length === 0) {
    if (!options.alone) {
      throw new Error('no socket passed (LISTEN_FDS, LISTEN_PID' +
        (options.names ? `, named ${options.names.join(', ')}` : '') +
        "): run this worker under softreload's agent, or give serve() options.alone = {port}");
    }
    addresses.push({ port: options.alone.port, host: options.alone.host });
  }
  let servers;
  if (target instanceof http.Server) {
    if (addresses.length > 1) {
      throw new Error(`${addresses.length} sockets passed but one http.Server given: pass a request listener, ` +
        'or choose one socket with options.names');
    }
    servers = [target];
  } else if (typeof target === 'function') {
    servers = addresses.map(() => http.createServer(target));
  } else {
    throw new TypeError('serve() takes a request listener (e.g. an Express app) or an http.Server');
  }

  const drainer = new Drainer(servers, options.idleGraceMs ?? DEFAULT_IDLE_GRACE_MS);
  await Promise.all(servers.map((server, i) => listen(server, addresses[i])));
  const signal = options.stopSignal || 'SIGTERM';
  const onDrained = options.onDrained || (() => process.exit(0));
  const drain = () => drainer.drain().then(onDrained);
  process.on(signal, drain); // on, not once: a second signal must not end the drain
  await notify('READY=1');
  return { servers, drain };
}

function listen(server, address) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Drainer follows the connections of some servers and closes them without
 * a request lost: a request that arrives once the drain began is answered
 * with `Connection: close`, and a kept-alive connection is closed once it
 * has stayed idle for the grace, with no request begun on it. Closing it
 * at once, as http.Server.close() does, races the client: a connection
 * that is idle now is, for a busy client, the one its next request is
 * being written to.
 */
class Drainer {
  constructor(servers, idleGraceMs) {
    this.servers = servers;
    this.graceMs = idleGraceMs;
    this.draining = false;
    this.sockets = new Set();
    this.responses = new Set();
    this.timer = null;
    this.due = 0;
    this.done = null;
    for (const server of servers) {
      server.on('connection', (socket) => this.track(socket));
      server.prependListener('request', (req, res) => this.request(req, res));
    }
  }

  track(socket) {
    socket.softreloadBusy = 0;
    socket.softreloadIdleSince = Date.now();
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
    });
  }

  request(req, res) {
    const socket = req.socket;
    socket.softreloadBusy++;
    this.responses.add(res);
    if (this.draining) {
      res.setHeader('Connection', 'close');
    }
    res.once('close', () => {
      this.responses.delete(res);
      socket.softreloadBusy--;
      socket.softreloadIdleSince = Date.now();
      if (this.draining) {
        this.schedule(this.graceMs);
      }
    });
  }

  /** Drains; resolves once every server has closed and every connection ended. */
  drain() {
    if (this.done) {
      return this.done;
    }
    this.draining = true;
    this.done = Promise.all(this.servers.map((server) => new Promise((resolve) => {
      server.once('close', resolve);
      // net.Server's close stops accepting (it closes this process's fd, not
      // the agent's socket) without http.Server's at-once idle close.
      net.Server.prototype.close.call(server);
    }))).then(() => clearTimeout(this.timer));
    for (const res of this.responses) {
      if (!res.headersSent) {
        res.setHeader('Connection', 'close');
      }
    }
    this.schedule(this.graceMs);
    return this.done;
  }

  // schedule runs closeIdle in ms, or earlier if it is due earlier already.
  schedule(ms) {
    const due = Date.now() + ms;
    if (this.timer && this.due <= due) {
      return;
    }
    clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.closeIdle();
    }, ms);
  }

  // closeIdle closes the connections idle for the grace; Node's
  // closeIdleConnections leaves any with a request begun (even half read).
  closeIdle() {
    const now = Date.now();
    let next = Infinity;
    for (const socket of this.sockets) {
      if (socket.softreloadBusy === 0 && now - socket.softreloadIdleSince < this.graceMs) {
        next = Math.min(next, socket.softreloadIdleSince + this.graceMs - now);
      }
    }
    if (next !== Infinity) {
      this.schedule(next);
      return;
    }
    for (const server of this.servers) {
      server.closeIdleConnections();
    }
  }
}

module.exports = { serve, notify, notifyHelpers, listenFds, identity, FIRST_FD, DEFAULT_IDLE_GRACE_MS };
