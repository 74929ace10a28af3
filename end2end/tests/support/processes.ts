// A private app + IdP pair for tests that must stop and restart the IdP
// without disturbing the pair the whole suite shares.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

import {
  APP_BINARY, IDP_SERVER, REPO_ROOT, appEnv, idpEnv,
} from './env';

export interface Managed {
  name: string;
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export async function assertPortFree(port: number): Promise<void> {
  if (!(await portIsFree(port))) {
    throw new Error(`port ${port} is already in use; this test needs it for its own app/IdP pair`);
  }
}

async function waitForHealth(url: string, proc: Managed, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`${proc.name} exited (${proc.child.exitCode ?? proc.child.signalCode}) before becoming healthy:\n${proc.output()}`);
    }
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => { setTimeout(r, 100); });
  }
  throw new Error(`${proc.name} not healthy at ${url} after ${timeoutMs} ms:\n${proc.output()}`);
}

function start(name: string, command: string, args: string[], env: Record<string, string>, cwd: string): Managed {
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return {
    name,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = new Promise<'timeout'>((r) => { setTimeout(() => r('timeout'), 5_000); });
        if ((await Promise.race([exited, timer])) === 'timeout') {
          child.kill('SIGKILL');
          await exited;
        }
      }
    },
  };
}

export async function startIdp({ idpPort, appPort }: { idpPort: number; appPort: number }): Promise<Managed> {
  await assertPortFree(idpPort);
  const proc = start(`dev IdP :${idpPort}`, process.execPath, [IDP_SERVER], idpEnv({ idpPort, appPort }), REPO_ROOT);
  // Generous: on a loaded 2-core CI machine, Node's start-up plus the RSA key
  // generation once took more than 15 s (a CI run failed on exactly that).
  await waitForHealth(`http://127.0.0.1:${idpPort}/dev/health`, proc, 60_000);
  return proc;
}

export async function startApp(
  { appPort, idpPort, env = {} }: { appPort: number; idpPort: number; env?: Record<string, string> },
): Promise<Managed> {
  await assertPortFree(appPort);
  const proc = start(`Gatehouse :${appPort}`, APP_BINARY, [], { ...appEnv({ appPort, idpPort }), ...env }, REPO_ROOT);
  await waitForHealth(`http://127.0.0.1:${appPort}/healthz`, proc, 60_000);
  return proc;
}
