<?php

// The library's tests, with real processes and real sockets: php tests/run.php
// (or composer test). Two workers share one listening socket, as under the
// agent, and one of them drains while the other serves. Plain PHP, so that
// they run offline with Debian's php-cli alone.

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Softreload\Worker\Environment;
use Softreload\Worker\Http\Request;
use Softreload\Worker\Http\Response;

const WAIT = 60.0; // an upper bound on waiting for something that must happen

$failures = 0;
$cleanups = [];
$failing = false; // the test running has failed: cleanups say more

function test(string $name, callable $fn): void
{
    global $failures, $cleanups, $failing;
    $failing = false;
    try {
        $fn();
        echo "ok   $name\n";
    } catch (\Throwable $e) {
        $failures++;
        $failing = true;
        echo "FAIL $name\n     {$e->getMessage()}\n     at {$e->getFile()}:{$e->getLine()}\n";
    } finally {
        foreach (array_reverse($cleanups) as $cleanup) {
            $cleanup();
        }
        $cleanups = [];
    }
}

function check(bool $ok, string $what): void
{
    if (!$ok) {
        throw new \RuntimeException($what);
    }
}

function same(mixed $want, mixed $got, string $what): void
{
    check($want === $got, sprintf("%s: want %s, got %s", $what, var_export($want, true), var_export($got, true)));
}

test('listenFds reads the sockets as sd_listen_fds(3) does', function (): void {
    $cases = [
        'two named sockets' => [['LISTEN_PID' => '42', 'LISTEN_FDS' => '2', 'LISTEN_FDNAMES' => 'web-0:web-1'],
            [['fd' => 3, 'name' => 'web-0'], ['fd' => 4, 'name' => 'web-1']]],
        'no names' => [['LISTEN_PID' => '42', 'LISTEN_FDS' => '1'], [['fd' => 3, 'name' => 'unknown']]],
        "another process's sockets" => [['LISTEN_PID' => '43', 'LISTEN_FDS' => '1'], []],
        'no LISTEN_PID' => [['LISTEN_FDS' => '1'], []],
        'a count that is not a number' => [['LISTEN_PID' => '42', 'LISTEN_FDS' => 'x'], []],
        'zero sockets' => [['LISTEN_PID' => '42', 'LISTEN_FDS' => '0'], []],
    ];
    foreach ($cases as $name => [$env, $want]) {
        same($want, (new Environment($env, 42))->listenFds(), $name);
    }
});

test('listeners without a socket says how to run the worker', function (): void {
    try {
        (new Environment([], 42))->listeners();
        check(false, 'listeners() returned without a socket');
    } catch (\RuntimeException $e) {
        check(str_contains($e->getMessage(), "no socket passed (LISTEN_FDS, LISTEN_PID): run this worker under softreload's agent"),
            "message: {$e->getMessage()}");
    }
});

test('the identity variables', function (): void {
    $env = new Environment(['SOFTRELOAD_GROUP' => 'web', 'SOFTRELOAD_WORKER_ID' => '0',
        'SOFTRELOAD_REVISION' => 'ab12', 'SOFTRELOAD_CODE_DIR' => '/revs/ab12']);
    same(['web', '0', 'ab12', '/revs/ab12'], [$env->group(), $env->workerId(), $env->revision(), $env->codeDir()], 'identity');
});

test('notify sends READY=1 on a unix datagram socket, by path and by abstract name', function (): void {
    foreach ([false, true] as $abstract) {
        $receiver = notifyReceiver($abstract);
        same(true, (new Environment(['NOTIFY_SOCKET' => $receiver['address']]))->notify('READY=1'), 'notify');
        same('READY=1', receive($receiver['socket']), 'datagram');
    }
    same(false, (new Environment([]))->notify('READY=1'), 'notify without NOTIFY_SOCKET');
});

test('keep-alive as HTTP/1.0 and 1.1 clients ask', function (): void {
    $cases = [
        ['HTTP/1.1', null, true], ['HTTP/1.1', 'close', false], ['HTTP/1.1', 'Keep-Alive, Close', false],
        ['HTTP/1.0', null, false], ['HTTP/1.0', 'keep-alive', true],
    ];
    foreach ($cases as [$protocol, $connection, $want]) {
        $headers = $connection === null ? [] : ['connection' => $connection];
        same($want, (new Request('GET', '/', $protocol, $headers))->keepAlive(), "$protocol Connection: $connection");
    }
});

test('a response goes out whole, in one string, framed', function (): void {
    $r = new Response(200, ['Content-Type' => 'text/plain', 'Content-Length' => '99', 'Connection' => 'x'], "hi\n");
    same("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nhi\n",
        $r->encode(true), 'keep-alive');
    same("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
        $r->encode(false, true), 'HEAD, close');
});

test('a worker drains kept-alive connections without losing a request, beside another on the same socket', function (): void {
    global $cleanups;
    $listener = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
    check($listener !== false, "listening: $errstr");
    $cleanups[] = fn () => fclose($listener);
    $port = (int) substr(strrchr(stream_socket_get_name($listener, false), ':'), 1);
    // a drains with a grace no test step can outlast, c with the default
    // one, so that what each shows depends on no timing; b serves all along.
    $a = startWorker($listener, 'a', 60);
    $b = startWorker($listener, 'b');
    $c = startWorker($listener, 'c');

    // Connections kept alive on a and c, each in a state a drain must handle.
    $held = connectionTo($port, $a['pid']); // a request in flight
    $next = connectionTo($port, $a['pid']); // its next request comes during the drain
    $half = connectionTo($port, $c['pid']); // a request half read when the drain begins
    $idle = connectionTo($port, $c['pid']); // nothing more
    fwrite($held, "GET /?hold HTTP/1.1\r\nHost: worker\r\n\r\n");
    waitFor($a, 'holding');
    fresh($port); // another worker answers while a is held in its handler

    posix_kill($a['pid'], SIGTERM);
    $inFlight = response($held);
    same(200, $inFlight['status'], 'the request in flight');
    same('close', $inFlight['headers']['connection'] ?? null, 'the request in flight is answered with Connection: close');

    fwrite($next, "GET / HTTP/1.1\r\nHost: worker\r\n\r\n");
    $during = response($next);
    same(200, $during['status'], 'a request on a kept-alive connection during the drain');
    check(str_contains($during['body'], "pid {$a['pid']}\n"), "answered by {$during['body']}, not by worker a");
    same('close', $during['headers']['connection'] ?? null, 'a request on a kept-alive connection during the drain says Connection: close');
    foreach ([$held, $next] as $conn) {
        closedBy($conn);
    }
    same(0, exitCode($a), "worker a's exit status");
    fresh($port);

    fwrite($half, "GET /half HTTP/1.1\r\nHost: worker\r\n");
    fresh($port); // c has read the half request or will, before any idle close: its bytes wait on the socket
    posix_kill($c['pid'], SIGTERM);
    same('', closedBy($idle), 'the idle connection is closed, with nothing written on it');
    fwrite($half, "\r\n");
    $completed = response($half);
    same(200, $completed['status'], 'the half-read request outlived the idle close');
    same('close', $completed['headers']['connection'] ?? null, 'the half-read request');
    closedBy($half);
    same(0, exitCode($c), "worker c's exit status");

    // With a and c gone, b alone answers on the socket they closed: neither shut it down.
    for ($i = 0; $i < 5; $i++) {
        check(str_contains(fresh($port)['body'], "pid {$b['pid']}\n"), 'a new connection after the drains is not answered by b');
    }

    // Pipelined requests are answered in order; bad ones are refused and closed.
    $conn = connect($port);
    fwrite($conn, "GET /1 HTTP/1.1\r\nHost: w\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: w\r\n\r\n");
    same(200, response($conn)['status'], 'the first pipelined request');
    $head = response($conn, true);
    same(['', 'keep-alive'], [$head['body'], $head['headers']['connection']], 'HEAD, pipelined');
    // A handler that throws gets a 500, and the connection lives on.
    fwrite($conn, "GET /?throw HTTP/1.1\r\nHost: w\r\n\r\n");
    $thrown = response($conn);
    same([500, 'keep-alive'], [$thrown['status'], $thrown['headers']['connection']], 'a handler that throws');
    fwrite($conn, "GET / HTTP/1.1\r\nHost: w\r\n\r\n");
    same(200, response($conn)['status'], 'the next request after a 500');
    $cases = [
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" => 411,
        "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n" => 400,
        "nonsense\r\n\r\n" => 400,
    ];
    foreach ($cases as $request => $status) {
        $conn = connect($port);
        fwrite($conn, $request);
        $refused = response($conn);
        same([$status, 'close'], [$refused['status'], $refused['headers']['connection']], json_encode($request));
        same('', closedBy($conn), 'after a refused request');
    }
    $conn = connect($port);
    fwrite($conn, "POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    same(100, response($conn)['status'], 'Expect: 100-continue');
    fwrite($conn, 'hello');
    same(200, response($conn)['status'], 'the body after 100 Continue');
});

// notifyReceiver binds a unix datagram socket, as the agent does for each worker.
function notifyReceiver(bool $abstract): array
{
    global $cleanups;
    $dir = sys_get_temp_dir() . '/notify-' . bin2hex(random_bytes(6));
    mkdir($dir);
    $address = $abstract ? '@softreload-test-' . bin2hex(random_bytes(6)) : "$dir/notify.sock";
    $socket = socket_create(AF_UNIX, SOCK_DGRAM, 0);
    check(socket_bind($socket, $abstract ? "\0" . substr($address, 1) : $address), 'binding the notify socket');
    $cleanups[] = function () use ($socket, $dir, $abstract, $address): void {
        socket_close($socket);
        if (!$abstract) {
            unlink($address);
        }
        rmdir($dir);
    };
    return ['address' => $address, 'socket' => $socket];
}

function receive(\Socket $socket): string
{
    $read = [$socket];
    $write = $except = null;
    check(socket_select($read, $write, $except, (int) WAIT) === 1, 'nothing came on the notify socket');
    $buf = '';
    socket_recv($socket, $buf, 4096, 0);
    return $buf;
}

// startWorker runs tests/worker.php with the listener as fd 3 and
// LISTEN_PID set to its own pid (sh execs it), and waits for its READY=1.
function startWorker($listener, string $revision, ?float $grace = null): array
{
    global $cleanups;
    $notify = notifyReceiver(false);
    $stderr = tempnam(sys_get_temp_dir(), 'worker-stderr');
    $env = getenv() + ['LISTEN_FDS' => '1', 'LISTEN_FDNAMES' => 'web-0', 'NOTIFY_SOCKET' => $notify['address'],
        'SOFTRELOAD_REVISION' => $revision] + ($grace === null ? [] : ['GRACE_SECONDS' => (string) $grace]);
    $proc = proc_open(['sh', '-c', 'LISTEN_PID=$$ exec "$0" "$@"', PHP_BINARY, __DIR__ . '/worker.php'],
        [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['file', $stderr, 'w'], 3 => $listener], $pipes, null, $env);
    check(is_resource($proc), 'starting the worker');
    $worker = ['proc' => $proc, 'pid' => proc_get_status($proc)['pid'], 'stdout' => $pipes[1], 'seen' => '', 'exit' => null];
    $cleanups[] = function () use ($proc, $stderr, $revision): void {
        global $failing;
        if (proc_get_status($proc)['running']) {
            proc_terminate($proc, SIGKILL);
        }
        $err = file_get_contents($stderr);
        if ($failing && $err !== '') {
            echo "     worker $revision stderr: $err";
        }
        unlink($stderr);
    };
    same('READY=1', receive($notify['socket']), "worker $revision's notification");
    return $worker;
}

function waitFor(array &$worker, string $line): void
{
    $deadline = microtime(true) + WAIT;
    while (!in_array($line, explode("\n", $worker['seen']), true)) {
        $read = [$worker['stdout']];
        $write = $except = null;
        check(microtime(true) < $deadline && stream_select($read, $write, $except, 1) !== false,
            "the worker never said \"$line\"; it said: {$worker['seen']}");
        if ($read) {
            $worker['seen'] .= (string) fread($worker['stdout'], 8192);
        }
    }
}

function exitCode(array $worker): int
{
    $deadline = microtime(true) + WAIT;
    while (($st = proc_get_status($worker['proc']))['running']) {
        check(microtime(true) < $deadline, 'the worker did not exit');
        usleep(10000);
    }
    return $st['signaled'] ? -$st['termsig'] : $st['exitcode'];
}

/** @return resource */
function connect(int $port)
{
    $conn = stream_socket_client("tcp://127.0.0.1:$port", $errno, $errstr, WAIT);
    check($conn !== false, "connecting: $errstr");
    stream_set_timeout($conn, (int) WAIT);
    return $conn;
}

// connectionTo opens kept-alive connections until one is answered by the
// worker with this pid, and returns it.
function connectionTo(int $port, int $pid)
{
    while (true) {
        $conn = connect($port);
        fwrite($conn, "GET / HTTP/1.1\r\nHost: worker\r\n\r\n");
        $r = response($conn);
        same('keep-alive', $r['headers']['connection'] ?? null, 'a first response');
        if (str_contains($r['body'], "pid $pid\n")) {
            return $conn;
        }
        fclose($conn);
    }
}

// fresh sends one request on a new connection; it must be answered.
function fresh(int $port): array
{
    $conn = connect($port);
    fwrite($conn, "GET / HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n");
    $r = response($conn);
    same(200, $r['status'], 'a request on a new connection');
    fclose($conn);
    return $r;
}

// response reads one response framed by Content-Length.
function response($conn, bool $head = false): array
{
    $buf = '';
    while (($end = strpos($buf, "\r\n\r\n")) === false) {
        $chunk = fread($conn, 1);
        check($chunk !== false && $chunk !== '', 'connection closed (or timed out) before a whole response: ' . json_encode($buf));
        $buf .= $chunk;
    }
    $lines = explode("\r\n", substr($buf, 0, $end));
    $status = (int) explode(' ', array_shift($lines))[1];
    $headers = [];
    foreach ($lines as $line) {
        [$name, $value] = explode(':', $line, 2);
        $headers[strtolower($name)] = trim($value);
    }
    $length = $head || $status === 100 ? 0 : (int) ($headers['content-length'] ?? 0);
    $body = '';
    while (strlen($body) < $length) {
        $chunk = fread($conn, $length - strlen($body));
        check($chunk !== false && $chunk !== '', 'connection closed before the whole body');
        $body .= $chunk;
    }
    return ['status' => $status, 'headers' => $headers, 'body' => $body];
}

// closedBy reads until the worker closes the connection, and returns what it wrote meanwhile.
function closedBy($conn): string
{
    $rest = stream_get_contents($conn);
    check(!stream_get_meta_data($conn)['timed_out'], 'the connection was not closed');
    fclose($conn);
    return (string) $rest;
}

echo $failures === 0 ? "PASS\n" : "FAIL: $failures failed\n";
exit($failures === 0 ? 0 : 1);
