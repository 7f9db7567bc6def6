<?php

declare(strict_types=1);

namespace Softreload\Worker\Http;

/** An HTTP response; the server adds Content-Length and Connection. */
final class Response
{
    /** @param array<string, string> $headers */
    public function __construct(
        public readonly int $status = 200,
        public readonly array $headers = ['Content-Type' => 'text/plain; charset=utf-8'],
        public readonly string $body = '',
    ) {
    }

    private const REASONS = [
        100 => 'Continue', 200 => 'OK', 201 => 'Created', 204 => 'No Content', 301 => 'Moved Permanently',
        302 => 'Found', 304 => 'Not Modified', 400 => 'Bad Request', 403 => 'Forbidden', 404 => 'Not Found',
        405 => 'Method Not Allowed', 411 => 'Length Required', 413 => 'Content Too Large',
        431 => 'Request Header Fields Too Large', 500 => 'Internal Server Error', 501 => 'Not Implemented',
        503 => 'Service Unavailable',
    ];

    /**
     * The response as bytes, head and body in one string: it goes out in one
     * write, so a kept-alive connection never waits on Nagle's algorithm and
     * the client's delayed ACK between two small writes.
     */
    public function encode(bool $keepAlive, bool $head = false): string
    {
        $out = sprintf("HTTP/1.1 %d %s\r\n", $this->status, self::REASONS[$this->status] ?? 'Status');
        foreach ($this->headers as $name => $value) {
            $lower = strtolower($name);
            if ($lower === 'content-length' || $lower === 'connection' || $lower === 'transfer-encoding') {
                continue;
            }
            $out .= "$name: $value\r\n";
        }
        $out .= 'Content-Length: ' . strlen($this->body) . "\r\n";
        $out .= 'Connection: ' . ($keepAlive ? 'keep-alive' : 'close') . "\r\n\r\n";
        return $head ? $out : $out . $this->body;
    }
}
