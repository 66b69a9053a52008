import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/**
 * `npm start`: the worker and the webhook adapter against the configured endpoints, as two child
 * processes (as in production, where they scale separately). SIGINT/SIGTERM are passed to both; if
 * either exits, the other is stopped and the exit code is passed on.
 */
function entry(name: 'worker' | 'webhook/main'): string[] {
  const compiled = __filename.endsWith('.js');
  const file = path.join(__dirname, `${name}.${compiled ? 'js' : 'ts'}`);
  return compiled ? [file] : ['--import', 'tsx', file];
}

function main(): void {
  const children: ChildProcess[] = (['worker', 'webhook/main'] as const).map((name) =>
    spawn(process.execPath, entry(name), { stdio: 'inherit', env: process.env }),
  );
  let exiting = false;
  const stopAll = (signal: NodeJS.Signals): void => {
    for (const child of children) if (child.exitCode === null) child.kill(signal);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      // The children are stopping already: the first to exit must not send the other a second signal.
      exiting = true;
      stopAll(signal);
    });
  }
  let remaining = children.length;
  let code = 0;
  for (const child of children) {
    child.on('exit', (exitCode) => {
      code = code || (exitCode ?? 1);
      if (!exiting) {
        exiting = true;
        stopAll('SIGTERM');
      }
      remaining -= 1;
      if (remaining === 0) process.exit(code);
    });
  }
}

main();
