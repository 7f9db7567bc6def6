<?php

declare(strict_types=1);

namespace Softreload\Worker\Http;

use Softreload\Worker\Environment;

/**
 * A small HTTP/1.1 server with keep-alive for a softreload worker, in one
 * process and one loop (stream_select's socket twin), Workerman-style.
 *
 * serve() takes the agent's sockets, says READY=1, and answers requests
 * with the handler until the stop signal. Then it drains, as the worker
 * contract asks: it stops accepting (it closes its own copy of the socket,
 * never shutdown(2), so the other workers keep the accept queue), answers
 * the requests in flight and any that arrive meanwhile with
 * "Connection: close", closes a kept-alive connection once it has stayed
 * idle for $idleGrace with nothing read on it, and returns once every
 * connection is closed. A connection with a request half read is never
 * closed, except after $readTimeout without a byte.
 */
final class Server
{
    /** @var array<int, Connection> by spl_object_id of the socket */
    private array $conns = [];
    /** @var list<\Socket> */
    private array $listeners = [];
    private bool $stopAsked = false;
    private ?float $drainSince = null;
    private \Closure $handler;

    /**
     * @param callable(Request): Response $handler
     * @param float $idleGrace   during a drain, how long a kept-alive connection must stay idle before it is closed
     * @param float $idleTimeout how long a kept-alive connection may stay idle otherwise
     * @param float $readTimeout how long a request begun may go without a byte
     * @param int   $stopSignal  the group's stopSignal
     */
    public function __construct(
        callable $handler,
        private float $idleGrace = 0.5,
        private float $idleTimeout = 5.0,
        private float $readTimeout = 10.0,
        private int $stopSignal = SIGTERM,
        private int $maxHeaderBytes = 65536,
        private int $maxBodyBytes = 8 << 20,
    ) {
        $this->handler = \Closure::fromCallable($handler);
    }

    /**
     * Serves on the agent's sockets (or $listeners) until the stop signal,
     * then drains and returns.
     *
     * @param list<\Socket>|null $listeners listening sockets; the inherited ones by default
     */
    public function serve(?Environment $env = null, ?array $listeners = null): void
    {
        $env ??= new Environment();
        $this->listeners = array_values($listeners ?? $env->listeners());
        foreach ($this->listeners as $listener) {
            socket_set_nonblock($listener);
        }
        pcntl_async_signals(true);
        pcntl_signal($this->stopSignal, function (): void {
            $this->stopAsked = true;
        });
        $env->notify('READY=1');
        while (true) {
            if ($this->stopAsked && $this->drainSince === null) {
                $this->beginDrain($env);
            }
            $this->closeExpired(microtime(true));
            if ($this->drainSince !== null && $this->conns === []) {
                return;
            }
            $this->wait();
        }
    }

    /** Whether the stop signal came: a handler that waits can stop waiting. */
    public function draining(): bool
    {
        return $this->stopAsked;
    }

    /** Drains as the stop signal does. */
    public function stop(): void
    {
        $this->stopAsked = true;
    }

    private function beginDrain(Environment $env): void
    {
        $this->drainSince = microtime(true);
        foreach ($this->listeners as $listener) {
            socket_close($listener);
        }
        $this->listeners = [];
        try {
            $env->notify('STOPPING=1');
        } catch (\RuntimeException) {
            // The agent knows it asked; nothing depends on this.
        }
    }

    /** wait waits for the sockets (or the next timer) and does what they are ready for. */
    private function wait(): void
    {
        $read = $this->listeners;
        $write = [];
        foreach ($this->conns as $c) {
            if (!$c->closeAfterWrite) {
                $read[] = $c->socket;
            }
            if ($c->out !== '') {
                $write[] = $c->socket;
            }
        }
        $except = null;
        $timeout = $this->nextTimer(microtime(true));
        if ($read === [] && $write === []) {
            usleep((int) ($timeout * 1e6)); // nothing to wait on but a timer
            return;
        }
        $n = @socket_select($read, $write, $except, (int) $timeout, (int) (fmod($timeout, 1.0) * 1e6));
        if ($n === false) {
            $err = socket_last_error();
            socket_clear_error();
            if ($err === SOCKET_EINTR) {
                return; // a signal: the loop looks at it
            }
            throw new \RuntimeException('waiting on the sockets: ' . socket_strerror($err));
        }
        foreach ($write as $socket) {
            if (isset($this->conns[spl_object_id($socket)])) {
                $this->write($this->conns[spl_object_id($socket)]);
            }
        }
        foreach ($read as $socket) {
            if (in_array($socket, $this->listeners, true)) {
                $this->accept($socket);
            } elseif (isset($this->conns[spl_object_id($socket)])) {
                $this->read($this->conns[spl_object_id($socket)]);
            }
        }
    }

    /** nextTimer is how long to wait at most: until the first connection's deadline, 1s at most. */
    private function nextTimer(float $now): float
    {
        $next = 1.0;
        foreach ($this->conns as $c) {
            $deadline = $this->deadline($c);
            if ($deadline !== null) {
                $next = min($next, max(0.0, $deadline - $now));
            }
        }
        return $next;
    }

    /** deadline is when a connection is closed if nothing happens on it, or null. */
    private function deadline(Connection $c): ?float
    {
        if ($c->out !== '' || $c->closeAfterWrite) {
            return null;
        }
        if ($c->in !== '') {
            return $c->lastActive + $this->readTimeout;
        }
        if ($this->drainSince !== null) {
            return max($c->lastActive, $this->drainSince) + $this->idleGrace;
        }
        return $c->lastActive + $this->idleTimeout;
    }

    private function closeExpired(float $now): void
    {
        foreach ($this->conns as $c) {
            $deadline = $this->deadline($c);
            // An idle connection with a request arrived but not yet read is
            // not idle: the next wait reads it.
            if ($deadline !== null && $now >= $deadline && ($c->in !== '' || !$c->pending())) {
                $this->close($c);
            }
        }
    }

    private function accept(\Socket $listener): void
    {
        // Non-blocking: when another worker took the connection, accept
        // fails at once with EAGAIN.
        for ($i = 0; $i < 64 && !$this->stopAsked; $i++) {
            $socket = @socket_accept($listener);
            if ($socket === false) {
                break;
            }
            socket_set_nonblock($socket);
            @socket_set_option($socket, SOL_TCP, TCP_NODELAY, 1); // fails on unix sockets, which need none
            $this->conns[spl_object_id($socket)] = new Connection($socket, microtime(true));
        }
        socket_clear_error($listener);
    }

    private function read(Connection $c): void
    {
        $buf = '';
        $n = @socket_recv($c->socket, $buf, 65536, 0);
        if ($n === false) {
            $err = socket_last_error($c->socket);
            socket_clear_error($c->socket);
            if ($err !== SOCKET_EAGAIN && $err !== SOCKET_EINTR) {
                $this->close($c);
            }
            return;
        }
        if ($n === 0) {
            // The client sends no more: answer what it sent, then close.
            $this->answer($c);
            $c->closeAfterWrite = true;
            $this->write($c);
            return;
        }
        $c->in .= $buf;
        $c->lastActive = microtime(true);
        $this->answer($c);
        $this->write($c);
    }

    /** answer answers every whole request read, in order. */
    private function answer(Connection $c): void
    {
        while (!$c->closeAfterWrite) {
            $request = $this->parse($c);
            if ($request === null) {
                return;
            }
            if ($request instanceof Response) {
                $c->out .= $request->encode(false);
                $c->closeAfterWrite = true;
                $c->in = '';
                return;
            }
            $response = $this->handle($request);
            // During a drain, a response says Connection: close unless the
            // client already sent more (a pipelined request, whole or in
            // part): that one is read and answered first.
            $keepAlive = $request->keepAlive() && (!$this->stopAsked || $c->in !== '');
            $c->out .= $response->encode($keepAlive, $request->method === 'HEAD');
            if (!$keepAlive) {
                $c->closeAfterWrite = true;
                $c->in = '';
            }
        }
    }

    private function handle(Request $request): Response
    {
        try {
            return ($this->handler)($request);
        } catch (\Throwable $e) {
            fwrite(STDERR, sprintf("Handler failed on %s %s: %s\n", $request->method, $request->target, $e));
            return new Response(500, body: "internal server error\n");
        }
    }

    /**
     * parse takes one whole request off the connection's input: a Request,
     * a Response refusing a bad one, or null while it is not whole yet.
     */
    private function parse(Connection $c): Request|Response|null
    {
        if ($c->in !== '' && ($c->in[0] === "\r" || $c->in[0] === "\n")) {
            $c->in = ltrim($c->in, "\r\n"); // empty lines before a request are allowed
        }
        $end = strpos($c->in, "\r\n\r\n");
        if ($end === false || $end > $this->maxHeaderBytes) {
            return strlen($c->in) > $this->maxHeaderBytes ? self::refuse(431, 'request head too large') : null;
        }
        $lines = explode("\r\n", substr($c->in, 0, $end));
        if (!preg_match('#^([!-~]+) (\S+) (HTTP/1\.[01])$#', array_shift($lines), $m)) {
            return self::refuse(400, 'malformed request line');
        }
        $headers = [];
        foreach ($lines as $line) {
            $colon = strpos($line, ':');
            if ($colon === false || $colon === 0 || $line[0] === ' ' || $line[0] === "\t") {
                return self::refuse(400, 'malformed header field');
            }
            $name = strtolower(substr($line, 0, $colon));
            $value = trim(substr($line, $colon + 1), " \t");
            $headers[$name] = isset($headers[$name]) ? $headers[$name] . ', ' . $value : $value;
        }
        if (isset($headers['transfer-encoding'])) {
            return self::refuse(411, 'chunked request bodies are not supported: send a Content-Length');
        }
        $length = $headers['content-length'] ?? '0';
        if (!ctype_digit($length)) {
            return self::refuse(400, 'malformed Content-Length');
        }
        if ((int) $length > $this->maxBodyBytes) {
            return self::refuse(413, 'request body too large');
        }
        if (strlen($c->in) < $end + 4 + (int) $length) {
            if (!$c->continued && strtolower($headers['expect'] ?? '') === '100-continue') {
                $c->out .= "HTTP/1.1 100 Continue\r\n\r\n";
                $c->continued = true;
            }
            return null;
        }
        $body = substr($c->in, $end + 4, (int) $length);
        $c->in = substr($c->in, $end + 4 + (int) $length);
        $c->continued = false;
        return new Request($m[1], $m[2], $m[3], $headers, $body);
    }

    private static function refuse(int $status, string $why): Response
    {
        return new Response($status, body: "$why\n");
    }

    private function write(Connection $c): void
    {
        while ($c->out !== '') {
            $n = @socket_write($c->socket, $c->out);
            if ($n === false) {
                $err = socket_last_error($c->socket);
                socket_clear_error($c->socket);
                if ($err === SOCKET_EINTR) {
                    continue;
                }
                if ($err !== SOCKET_EAGAIN) {
                    $this->close($c);
                }
                return; // the rest when the socket takes more
            }
            $c->out = (string) substr($c->out, $n);
        }
        $c->lastActive = microtime(true);
        if ($c->closeAfterWrite) {
            $this->close($c);
        }
    }

    private function close(Connection $c): void
    {
        unset($this->conns[spl_object_id($c->socket)]);
        socket_close($c->socket);
    }
}
