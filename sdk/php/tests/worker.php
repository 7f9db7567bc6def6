<?php

// The worker the tests run. GET /?throw throws; GET /?hold is answered
// once the drain has begun, and says "holding" on stdout when it arrives;
// "draining" says the stop signal was seen.

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Softreload\Worker\Environment;
use Softreload\Worker\Http\Request;
use Softreload\Worker\Http\Response;
use Softreload\Worker\Http\Server;

$env = new Environment();
$server = null;
$server = new Server(function (Request $r) use ($env, &$server): Response {
    if (array_key_exists('throw', $r->query())) {
        throw new \RuntimeException('asked to throw');
    }
    if (array_key_exists('hold', $r->query())) {
        echo "holding\n";
        while (!$server->draining()) {
            usleep(10000);
        }
        echo "draining\n";
    }
    return new Response(body: sprintf("hello, revision %s, pid %d\n", $env->revision(), getmypid()));
}, idleGrace: (float) (getenv('GRACE_SECONDS') ?: 0.5));
$server->serve($env);
echo "drained\n";
