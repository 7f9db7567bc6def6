<?php
// A softreload worker in PHP (Debian's php-cli), Workerman-style: one
// process serves many requests, and the agent is its master.
//
// softreload/worker (sdk/php, here in vendor/ where Composer puts it) takes
// the socket the agent passes (LISTEN_FDS, fd 3), says READY=1 on
// NOTIFY_SOCKET once it serves, keeps connections alive, and on SIGTERM
// drains: it stops accepting, answers the requests in flight with
// "Connection: close", closes the idle connections and returns. Every reload
// is a fresh process, so every line of code is new.

declare(strict_types=1);

require __DIR__ . '/vendor/softreload/worker/autoload.php'; // with Composer: vendor/autoload.php

use Softreload\Worker\Environment;
use Softreload\Worker\Http\Request;
use Softreload\Worker\Http\Response;
use Softreload\Worker\Http\Server;

$env = new Environment();
$server = new Server(fn (Request $r): Response => new Response(
    body: sprintf("hello from php, revision %s, worker %s, pid %d\n", $env->revision(), $env->workerId(), getmypid()),
));
$server->serve($env);
