<?php

declare(strict_types=1);

namespace Softreload\Worker;

/**
 * What the agent passes to a worker: its sockets (systemd socket
 * activation: LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, from fd 3), its
 * NOTIFY_SOCKET, and its identity (SOFTRELOAD_GROUP, SOFTRELOAD_WORKER_ID,
 * SOFTRELOAD_REVISION, SOFTRELOAD_CODE_DIR).
 */
final class Environment
{
    /** The first inherited socket's file descriptor (SD_LISTEN_FDS_START). */
    public const FIRST_FD = 3;

    /**
     * @param array<string, string> $env the variables; getenv() by default
     */
    public function __construct(private ?array $env = null, private ?int $pid = null)
    {
    }

    private function get(string $name): string
    {
        if ($this->env !== null) {
            return $this->env[$name] ?? '';
        }
        $value = getenv($name);
        return $value === false ? '' : $value;
    }

    /** The worker's group (SOFTRELOAD_GROUP). */
    public function group(): string
    {
        return $this->get('SOFTRELOAD_GROUP');
    }

    /** The worker's stable slot, "0" to count-1 (SOFTRELOAD_WORKER_ID). */
    public function workerId(): string
    {
        return $this->get('SOFTRELOAD_WORKER_ID');
    }

    /** The revision of the code it runs (SOFTRELOAD_REVISION). */
    public function revision(): string
    {
        return $this->get('SOFTRELOAD_REVISION');
    }

    /** The revision's immutable directory (SOFTRELOAD_CODE_DIR). */
    public function codeDir(): string
    {
        return $this->get('SOFTRELOAD_CODE_DIR');
    }

    /**
     * The sockets passed to this process, as sd_listen_fds(3) reads them:
     * none unless LISTEN_PID is this process's pid.
     *
     * @return list<array{fd: int, name: string}>
     */
    public function listenFds(): array
    {
        if ($this->get('LISTEN_PID') !== (string) ($this->pid ?? getmypid())) {
            return [];
        }
        $count = $this->get('LISTEN_FDS');
        if (!ctype_digit($count) || (int) $count < 1) {
            return [];
        }
        $names = explode(':', $this->get('LISTEN_FDNAMES'));
        $fds = [];
        for ($i = 0; $i < (int) $count; $i++) {
            $fds[] = ['fd' => self::FIRST_FD + $i, 'name' => ($names[$i] ?? '') !== '' ? $names[$i] : 'unknown'];
        }
        return $fds;
    }

    /**
     * The inherited sockets, non-blocking, by name: every worker of a group
     * waits on the same socket, so when another one took the connection
     * accept must fail at once, not block until the next one.
     *
     * @param list<string>|null $names only these (LISTEN_FDNAMES)
     * @return array<string, \Socket>
     */
    public function listeners(?array $names = null): array
    {
        $sockets = [];
        foreach ($this->listenFds() as ['fd' => $fd, 'name' => $name]) {
            if ($names !== null && !in_array($name, $names, true)) {
                continue;
            }
            $stream = @fopen("php://fd/$fd", 'r');
            $socket = $stream === false ? false : @socket_import_stream($stream);
            if ($socket === false) {
                throw new \RuntimeException("inherited fd $fd ($name) is not a socket");
            }
            socket_set_nonblock($socket);
            $sockets[$name] = $socket;
        }
        if ($sockets === []) {
            throw new \RuntimeException('no socket passed (LISTEN_FDS, LISTEN_PID'
                . ($names !== null ? ', named ' . implode(', ', $names) : '')
                . "): run this worker under softreload's agent");
        }
        return $sockets;
    }

    /**
     * Sends a state (e.g. "READY=1") to NOTIFY_SOCKET, the sd_notify
     * protocol. Returns false when there is none (the group's readiness is
     * not Notify).
     */
    public function notify(string $state): bool
    {
        $path = $this->get('NOTIFY_SOCKET');
        if ($path === '') {
            return false;
        }
        $address = $path[0] === '@' ? "\0" . substr($path, 1) : $path;
        $socket = socket_create(AF_UNIX, SOCK_DGRAM, 0);
        if ($socket === false) {
            throw new \RuntimeException('creating a unix datagram socket: ' . socket_strerror(socket_last_error()));
        }
        try {
            // connect, then send: socket_sendto cannot address an abstract socket ("@name").
            if (!@socket_connect($socket, $address) || @socket_send($socket, $state, strlen($state), 0) === false) {
                throw new \RuntimeException("sending $state to NOTIFY_SOCKET $path: "
                    . socket_strerror(socket_last_error($socket)));
            }
        } finally {
            socket_close($socket);
        }
        return true;
    }
}
