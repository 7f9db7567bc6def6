<?php

declare(strict_types=1);

namespace Softreload\Worker\Http;

/**
 * One accepted connection of a Server: what was read and not yet parsed,
 * what is still to write, and when it last did something.
 *
 * @internal
 */
final class Connection
{
    /** Bytes read and not yet parsed: a request begun, if not empty. */
    public string $in = '';
    /** Bytes of responses not yet written. */
    public string $out = '';
    /** Close once $out is written: the last response said Connection: close. */
    public bool $closeAfterWrite = false;
    /** A 100 Continue was sent for the request begun. */
    public bool $continued = false;

    public function __construct(public readonly \Socket $socket, public float $lastActive)
    {
    }

    /** No request begun and nothing to write: a kept-alive connection between requests. */
    public function idle(): bool
    {
        return $this->in === '' && $this->out === '' && !$this->closeAfterWrite;
    }

    /** Whether bytes of a next request wait in the kernel, unread. */
    public function pending(): bool
    {
        $buf = '';
        return @socket_recv($this->socket, $buf, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }
}
