import { createServer } from 'node:http';

/**
 * The floor the ingest benchmark compares the webhook adapter with: a bare Node HTTP server that reads
 * each request's body and answers 200, nothing else (no parsing, no storage). Run by bench/ingest.ts as
 * its own process; listens on WEBHOOK_HOST:WEBHOOK_PORT and answers GET /healthz.
 */
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
server.keepAliveTimeout = 75_000;
server.listen(Number(process.env.WEBHOOK_PORT), process.env.WEBHOOK_HOST ?? '127.0.0.1');
process.once('SIGTERM', () => server.close(() => process.exit(0)));
