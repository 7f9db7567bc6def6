'use strict';
// Tests of @softreload/worker with real processes and real sockets: two
// workers share one listening socket, as under the agent, and one of them
// drains while the other serves.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const { listenFds, notify, serve } = require('..');

const FIXTURE = path.join(__dirname, '..', 'testdata', 'worker.js');

test('listenFds reads the sockets as sd_listen_fds(3) does', () => {
  const cases = {
    'two named sockets': [{ LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'web-0:web-1' }, [{ fd: 3, name: 'web-0' }, { fd: 4, name: 'web-1' }]],
    'no names': [{ LISTEN_PID: '42', LISTEN_FDS: '1' }, [{ fd: 3, name: 'unknown' }]],
    'another process\'s sockets': [{ LISTEN_PID: '43', LISTEN_FDS: '1' }, []],
    'no LISTEN_PID': [{ LISTEN_FDS: '1' }, []],
    'a count that is not a number': [{ LISTEN_PID: '42', LISTEN_FDS: 'x' }, []],
    'zero sockets': [{ LISTEN_PID: '42', LISTEN_FDS: '0' }, []],
  };
  for (const [name, [env, want]] of Object.entries(cases)) {
    assert.deepStrictEqual(listenFds(env, 42), want, name);
  }
});

test('notify sends READY=1 on a unix datagram socket', async (t) => {
  for (const abstract of [false, true]) {
    const receiver = await notifyReceiver(t, abstract);
    assert.strictEqual(await notify('READY=1', { PATH: process.env.PATH, NOTIFY_SOCKET: receiver.address }), true);
    await receiver.waitFor('READY=1');
  }
});

test('notify without NOTIFY_SOCKET sends nothing', async () => {
  assert.strictEqual(await notify('READY=1', { PATH: process.env.PATH }), false);
});

test('notify with no helper says what to install', async () => {
  await assert.rejects(notify('READY=1', { PATH: '/nonexistent', NOTIFY_SOCKET: '/nonexistent.sock' }),
    /perl: not found; systemd-notify: not found\); install perl .* readiness: \{type: Delay\}/);
});

test('serve without a socket says how to run the worker', async (t) => {
  withEnv(t, { LISTEN_PID: undefined, LISTEN_FDS: undefined });
  await assert.rejects(serve(() => {}), /no socket passed .* run this worker under softreload's agent/);
});

test('serve alone listens where told, and drain() ends it without exiting', async (t) => {
  withEnv(t, { LISTEN_PID: undefined, LISTEN_FDS: undefined, NOTIFY_SOCKET: undefined });
  let drained = false;
  const { servers, drain } = await serve((req, res) => res.end('alone\n'),
    { alone: { port: 0, host: '127.0.0.1' }, stopSignal: 'SIGUSR2', onDrained: () => { drained = true; } });
  t.after(() => process.removeAllListeners('SIGUSR2'));
  const conn = await Conn.open(servers[0].address().port);
  conn.write('GET / HTTP/1.1\r\nHost: worker\r\n\r\n');
  assert.strictEqual((await conn.response()).body, 'alone\n');
  await drain();
  assert.strictEqual(await conn.closedBy(), '', 'the idle connection is closed by the drain');
  assert.strictEqual(drained, true, 'onDrained was called');
  assert.strictEqual(servers[0].listening, false);
});

test('serve refuses one http.Server for two sockets', async (t) => {
  withEnv(t, { LISTEN_PID: String(process.pid), LISTEN_FDS: '2', LISTEN_FDNAMES: 'a:b' });
  await assert.rejects(serve(http.createServer()), /2 sockets passed but one http.Server given/);
});

test('a worker drains kept-alive connections without losing a request, beside another on the same socket', async (t) => {
  const { port, fd, close } = await sharedListener();
  // a drains with a grace no test step can outlast, c with a short one, so
  // that what each shows depends on no timing; b serves all along.
  const a = await startWorker(t, fd, 'a', 60000);
  const b = await startWorker(t, fd, 'b', 500);
  const c = await startWorker(t, fd, 'c', 200);
  close(); // the workers hold the socket now, as they hold the agent's

  // Connections kept alive on a and c, each in a state a drain must handle.
  const held = await connectionTo(t, port, a.pid); // a request in flight
  const next = await connectionTo(t, port, a.pid); // its next request comes during the drain
  const half = await connectionTo(t, port, c.pid); // a request half read when the drain begins
  const idle = await connectionTo(t, port, c.pid); // nothing more
  held.write('GET /?hold HTTP/1.1\r\nHost: worker\r\n\r\n');
  await a.waitFor('holding');
  half.write('GET /half HTTP/1.1\r\nHost: worker\r\n');

  // New connections all along: every one is answered.
  const load = newConnectionLoad(port);

  a.process.kill('SIGTERM');
  await a.waitFor('draining');
  const inFlight = await held.response();
  assert.strictEqual(inFlight.status, 200);
  assert.strictEqual(inFlight.headers.connection, 'close', 'the request in flight is answered with Connection: close');

  next.write('GET / HTTP/1.1\r\nHost: worker\r\n\r\n');
  const during = await next.response();
  assert.strictEqual(during.status, 200);
  assert.match(during.body, new RegExp(`pid ${a.pid}\\b`));
  assert.strictEqual(during.headers.connection, 'close', 'a request on a kept-alive connection during the drain says Connection: close');
  for (const conn of [held, next]) {
    await conn.closedBy();
  }
  assert.deepStrictEqual(await a.exited, { code: 0, signal: null });

  c.process.kill('SIGTERM');
  assert.strictEqual(await idle.closedBy(), '', 'the idle connection is closed, with nothing written on it');
  half.write('\r\n');
  const completed = await half.response();
  assert.strictEqual(completed.status, 200, 'the half-read request outlived the idle close');
  assert.strictEqual(completed.headers.connection, 'close');
  await half.closedBy();
  assert.deepStrictEqual(await c.exited, { code: 0, signal: null });

  const { ok, failed, byPid } = await load.stop();
  assert.deepStrictEqual(failed, [], 'no new connection failed');
  assert.ok(ok > 0);
  // With a and c gone, b alone answers on the socket they closed: neither shut it down.
  for (let i = 0; i < 5; i++) {
    const conn = await Conn.open(port);
    conn.write('GET / HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n');
    assert.match((await conn.response()).body, new RegExp(`pid ${b.pid}\\b`));
  }
  t.diagnostic(`new-connection requests during the drains: ${ok}, by worker: ${JSON.stringify(byPid)}`);
});

// sharedListener binds a listening socket on loopback and gives its fd, to
// be passed to the workers before close() closes this process's copy.
async function sharedListener() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, fd: server._handle.fd, close: () => server.close() };
}

// startWorker runs the fixture with the socket as fd 3 and LISTEN_PID set
// to its own pid (sh execs it), and waits for its READY=1.
async function startWorker(t, fd, revision, graceMs) {
  const receiver = await notifyReceiver(t, false);
  const child = spawn('sh', ['-c', 'LISTEN_PID=$$ exec "$0" "$@"', process.execPath, FIXTURE], {
    stdio: ['ignore', 'pipe', 'pipe', fd],
    env: { ...process.env, LISTEN_FDS: '1', LISTEN_FDNAMES: 'web-0', NOTIFY_SOCKET: receiver.address, SOFTRELOAD_REVISION: revision, GRACE_MS: String(graceMs) },
  });
  const worker = lines(child.stdout);
  let stderr = '';
  child.stderr.on('data', (b) => { stderr += b; });
  worker.process = child;
  worker.pid = child.pid;
  worker.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    child.kill('SIGKILL');
    if (stderr) t.diagnostic(`worker ${revision} stderr: ${stderr}`);
  });
  await receiver.waitFor('READY=1');
  await worker.waitFor('serving');
  return worker;
}

// notifyReceiver binds a unix datagram socket in a perl process (Node has
// none) and prints what it receives.
async function notifyReceiver(t, abstract) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'notify-'));
  const file = path.join(dir, 'notify.sock');
  const address = abstract ? `@softreload-test-${process.pid}-${Math.random().toString(36).slice(2)}` : file;
  const script = 'use Socket; my $p = $ARGV[0]; $p =~ s/^@/\\0/; $| = 1;' +
    'socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!"; bind($s, pack_sockaddr_un($p)) or die "bind: $!";' +
    'print "bound\\n"; while (defined(recv($s, my $m, 4096, 0))) { print "$m\\n" }';
  const child = spawn('perl', ['-e', script, '--', address], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const out = lines(child.stdout);
  await out.waitFor('bound');
  return { address, waitFor: out.waitFor };
}

// lines collects a stream's lines; waitFor(line) resolves once it came.
function lines(stream) {
  const seen = [];
  const waiting = [];
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop();
    for (const line of parts) {
      seen.push(line);
      for (const w of waiting.filter((w) => w.line === line)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  return {
    waitFor: (line) => (seen.includes(line) ? Promise.resolve() : new Promise((resolve) => waiting.push({ line, resolve }))),
  };
}

// connectionTo opens kept-alive connections until one is answered by the
// worker with this pid, and returns it.
async function connectionTo(t, port, pid) {
  for (;;) {
    const conn = await Conn.open(port);
    t.after(() => conn.socket.destroy());
    conn.write('GET / HTTP/1.1\r\nHost: worker\r\n\r\n');
    const res = await conn.response();
    assert.strictEqual(res.headers.connection, 'keep-alive');
    if (res.body.includes(`pid ${pid}\n`)) {
      return conn;
    }
    conn.socket.destroy();
  }
}

// newConnectionLoad sends requests, each on a new connection, until stop().
function newConnectionLoad(port) {
  let running = true;
  const result = { ok: 0, failed: [], byPid: {} };
  const loop = (async () => {
    while (running) {
      try {
        const conn = await Conn.open(port);
        conn.write('GET / HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n');
        const res = await conn.response();
        const pid = (res.body.match(/pid (\d+)/) || [])[1];
        result.byPid[pid] = (result.byPid[pid] || 0) + 1;
        result.ok++;
      } catch (err) {
        result.failed.push(err.message);
      }
    }
  })();
  return { stop: async () => { running = false; await loop; return result; } };
}

// Conn is a raw HTTP/1.1 client connection, to see exactly what the
// worker writes and when it closes.
class Conn {
  static open(port) {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new Conn(socket)));
      socket.once('error', reject);
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = '';
    this.closed = false;
    this.wake = () => {};
    socket.setEncoding('latin1');
    socket.on('data', (d) => { this.buf += d; this.wake(); });
    socket.on('error', (err) => { this.error = err; });
    socket.on('close', () => { this.closed = true; this.wake(); });
  }

  write(s) {
    this.socket.write(s);
  }

  async until(done) {
    while (!done()) {
      await new Promise((resolve) => { this.wake = resolve; });
    }
  }

  // response reads one response framed by Content-Length.
  async response() {
    let head;
    let length;
    await this.until(() => {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end >= 0 && head === undefined) {
        head = this.buf.slice(0, end);
        length = Number((head.match(/\r\ncontent-length: *(\d+)/i) || [])[1]);
        this.buf = this.buf.slice(end + 4);
      }
      return (head !== undefined && this.buf.length >= length) || this.closed;
    });
    if (head === undefined || this.buf.length < length) {
      throw new Error(`connection closed before a whole response${this.error ? ` (${this.error.message})` : ''}`);
    }
    const [statusLine, ...fields] = head.split('\r\n');
    const headers = {};
    for (const f of fields) {
      const i = f.indexOf(':');
      headers[f.slice(0, i).toLowerCase()] = f.slice(i + 1).trim();
    }
    const body = this.buf.slice(0, length);
    this.buf = this.buf.slice(length);
    return { status: Number(statusLine.split(' ')[1]), headers, body };
  }

  // closedBy waits until the worker closed the connection, and returns what
  // it wrote meanwhile that was not read.
  async closedBy() {
    await this.until(() => this.closed);
    return this.buf;
  }
}

function withEnv(t, vars) {
  const saved = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
  t.after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
}
