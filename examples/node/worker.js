'use strict';
// A softreload worker in Node (Debian's nodejs), on Node's own http.Server.
//
// @softreload/worker (sdk/node, here in node_modules/ where npm puts it)
// serves on the socket the agent passes (LISTEN_FDS, fd 3), says READY=1 on
// NOTIFY_SOCKET once it listens, keeps connections alive, and on SIGTERM
// drains: it stops accepting, answers the requests in flight with
// "Connection: close", closes the idle connections and exits. An Express app
// goes where the handler is: serve(app).

const { serve, identity } = require('@softreload/worker');

const { revision, workerId } = identity();

serve((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(`hello from node, revision ${revision}, worker ${workerId}, pid ${process.pid}\n`);
}).catch((err) => {
  console.error(err.message);
  process.exit(1);
});
