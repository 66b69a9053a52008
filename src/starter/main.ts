import { connectDeviceOps } from './client';
import { runCli } from './cli';

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
  connect: () => connectDeviceOps(),
}).then(exitAfterFlush, (err: unknown) => {
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  exitAfterFlush(1);
});
