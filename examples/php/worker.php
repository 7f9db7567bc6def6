<?php
// A softreload worker in PHP (Debian's php-cli: sockets and pcntl built in),
// Workerman-style but without a master: the agent is the master.
//
// It serves HTTP on the socket the agent passes (LISTEN_FDS, fd 3), says
// READY=1 on NOTIFY_SOCKET once it serves, and on SIGTERM stops accepting,
// finishes the request in hand and exits. Every reload is a fresh process,
// so every line of code is new.

declare(strict_types=1);

$revision = getenv('SOFTRELOAD_REVISION') ?: '';
$worker = (string) getenv('SOFTRELOAD_WORKER_ID'); // "0" is a slot, not false

if (getenv('LISTEN_PID') !== (string) getmypid() || (int) getenv('LISTEN_FDS') < 1) {
    fwrite(STDERR, "no socket passed: run me under softreload's agent\n");
    exit(1);
}
$server = socket_import_stream(fopen('php://fd/3', 'r'));
if ($server === false) {
    fwrite(STDERR, "fd 3 is not a socket\n");
    exit(1);
}
// Every worker waits on this socket: when another one took the connection,
// accept must return at once, not block until the next one.
socket_set_nonblock($server);

$stopping = false;
pcntl_async_signals(true);
pcntl_signal(SIGTERM, function () use (&$stopping) { $stopping = true; });

function notify(string $state): void
{
    $path = getenv('NOTIFY_SOCKET');
    if (!$path) {
        return;
    }
    if ($path[0] === '@') {
        $path = "\0" . substr($path, 1);
    }
    $s = socket_create(AF_UNIX, SOCK_DGRAM, 0);
    socket_sendto($s, $state, strlen($state), 0, $path);
    socket_close($s);
}

function write_all(Socket $conn, string $data): void
{
    while ($data !== '') {
        $n = @socket_write($conn, $data);
        if ($n === false) {
            if (socket_last_error($conn) === SOCKET_EINTR) {
                socket_clear_error($conn);
                continue;
            }
            return;
        }
        $data = substr($data, $n);
    }
}

notify('READY=1');

while (!$stopping) {
    // Wait at most a second, so that a SIGTERM is seen even without traffic.
    $read = [$server];
    $write = $except = null;
    if (@socket_select($read, $write, $except, 1) < 1) {
        continue;
    }
    $conn = @socket_accept($server);
    if ($conn === false) {
        continue; // another worker took it
    }
    socket_set_option($conn, SOL_SOCKET, SO_RCVTIMEO, ['sec' => 10, 'usec' => 0]);
    // A connection accepted is answered, even if SIGTERM comes meanwhile.
    $request = '';
    while (strpos($request, "\r\n\r\n") === false) {
        $chunk = @socket_read($conn, 8192);
        if ($chunk === false && socket_last_error($conn) === SOCKET_EINTR) {
            socket_clear_error($conn);
            continue;
        }
        if ($chunk === false || $chunk === '') {
            break;
        }
        $request .= $chunk;
    }
    if (strpos($request, "\r\n\r\n") !== false) {
        $body = sprintf("hello from php, revision %s, worker %s, pid %d\n", $revision, $worker, getmypid());
        write_all($conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " . strlen($body)
            . "\r\nConnection: close\r\n\r\n" . $body);
    }
    socket_close($conn);
}
notify('STOPPING=1');
