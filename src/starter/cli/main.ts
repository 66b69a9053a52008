import { loadConfig } from '../../config';
import { runCli } from './cli';
import { assertReachable } from './cli-io';

/** The `device-ops` binary. */
async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Exits once everything written has reached the pipe: writes to a pipe are asynchronous, so
 * `process.exit` straight after `write` cuts piped output at the pipe's buffer (64 KB).
 */
function exitAfterFlush(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

// The reader went away (`device-ops ... | head`): nothing more can be shown, so stop quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  readStdin,
  isTTY: process.stdout.isTTY === true,
  connect: async () => {
    // Every section connectDeviceOps reads, so all configuration problems are listed at once.
    const config = loadConfig(['temporal', 'emqx', 'mongo', 'codec']);
    await assertReachable({ temporalAddress: config.temporal.TEMPORAL_ADDRESS, mongoUri: config.mongo.MONGODB_URI });
    // Loaded only by commands that connect: the Temporal, MongoDB and HTTP clients are most of the start-up time.
    const { connectDeviceOps } = await import('../client/index.js');
    return connectDeviceOps();
  },
}).then(exitAfterFlush, (err: unknown) => {
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  exitAfterFlush(1);
});
