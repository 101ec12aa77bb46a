// coturn from Debian (`turnserver`) on 127.0.0.1, set up for the TURN REST
// credentials Chorus mints (`--use-auth-secret`), for the browser tests.
// Its pid file and user database go to a temporary directory, nothing to
// the system's.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';

/** A free UDP port on 127.0.0.1 (free when asked: coturn takes it right after). */
function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** True once something answers a STUN binding request on `port`. */
function answersStun(port, timeoutMs) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const request = Buffer.alloc(20);
    request.writeUInt16BE(0x0001, 0); // Binding request, no attributes
    request.writeUInt32BE(0x2112a442, 4); // magic cookie
    randomBytes(12).copy(request, 8);
    const done = (ok) => {
      clearTimeout(timer);
      s.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on('message', (msg) => done(msg.length >= 20 && msg.readUInt16BE(0) === 0x0101 && msg.subarray(8, 20).equals(request.subarray(8, 20))));
    s.on('error', () => done(false));
    s.send(request, port, '127.0.0.1');
  });
}

/**
 * Starts coturn with `secret` and resolves once it answers STUN.
 * @returns {Promise<{ url: string, log: () => string, stop: () => Promise<void> }>}
 */
export async function startCoturn(secret) {
  const port = await freeUdpPort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chorus-coturn-'));
  const proc = spawn('turnserver', [
    '-n', '-v', '--listening-ip=127.0.0.1', `--listening-port=${port}`, '--relay-ip=127.0.0.1',
    '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm=chorus.test',
    '--allow-loopback-peers', '--no-cli', '--no-tls', '--no-dtls',
    '--log-file=stdout', '--simple-log', `--pidfile=${path.join(dir, 'turnserver.pid')}`, `--userdb=${path.join(dir, 'turndb')}`,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  let log = '';
  const keep = (d) => {
    log += d;
    if (log.length > 200000) log = log.slice(-100000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  exited.then(() => {
    process.removeListener('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  });
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  for (let i = 0; i < 50; i += 1) {
    if (proc.exitCode !== null) break;
    if (await answersStun(port, 200)) return { url: `turn:127.0.0.1:${port}?transport=udp`, log: () => log, stop };
  }
  await stop();
  throw new Error(`coturn did not answer on 127.0.0.1:${port}\n${log}`);
}
