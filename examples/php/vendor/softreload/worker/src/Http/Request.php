<?php

declare(strict_types=1);

namespace Softreload\Worker\Http;

/** An HTTP/1.x request, whole: head and body. */
final class Request
{
    /**
     * @param array<string, string> $headers by lower-case name; repeated fields joined with ", "
     */
    public function __construct(
        public readonly string $method,
        public readonly string $target,
        public readonly string $protocol,
        public readonly array $headers,
        public readonly string $body = '',
    ) {
    }

    /** The target's path, without the query. */
    public function path(): string
    {
        return (string) parse_url($this->target, PHP_URL_PATH);
    }

    /** @return array<string, mixed> the target's query, as parse_str reads it */
    public function query(): array
    {
        parse_str((string) parse_url($this->target, PHP_URL_QUERY), $query);
        return $query;
    }

    public function header(string $name): ?string
    {
        return $this->headers[strtolower($name)] ?? null;
    }

    /** Whether the client lets the connection live on after this request. */
    public function keepAlive(): bool
    {
        $tokens = array_map('trim', explode(',', strtolower($this->header('connection') ?? '')));
        if ($this->protocol === 'HTTP/1.0') {
            return in_array('keep-alive', $tokens, true);
        }
        return !in_array('close', $tokens, true);
    }
}
