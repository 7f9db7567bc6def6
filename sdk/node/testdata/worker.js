'use strict';
// The worker the tests run. GET /?hold is answered once the drain has
// begun, and says "holding" on stdout when it arrives; "draining" says the
// stop signal was seen.

const { serve, identity } = require('..');

const held = [];
const answer = (res) => res.end(`hello, revision ${identity().revision}, pid ${process.pid}\n`);

serve((req, res) => {
  if (new URL(req.url, 'http://worker').searchParams.has('hold')) {
    held.push(res);
    console.log('holding');
    return;
  }
  answer(res);
}, { idleGraceMs: Number(process.env.GRACE_MS || 1000) }).then(() => {
  // serve's own listener runs first: the drain has begun when this one runs.
  process.on('SIGTERM', () => {
    console.log('draining');
    held.splice(0).forEach(answer);
  });
  console.log('serving');
}, (err) => {
  console.error(err.message);
  process.exit(1);
});
