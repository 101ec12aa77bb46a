// A cluster of Chorus nodes for browser tests: redis-server, `chorus`
// processes with --redis, and HAProxy in front of them with health checks
// on /readyz. Whatever a test starts is registered with harness.mjs'
// `opened` and stopped by its `stopOpened` (call it in afterEach).

import net from 'node:net';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startServer, until, opened, candidatePair,
} from './harness.mjs';

const run = promisify(execFile);

export const TOKEN_SECRET = 'cluster-browser-test-token-secret-0123456789';
export const CLUSTER_SECRET = 'cluster-browser-test-cluster-secret';
/** Started in this order: the first one alone elects itself coordinator. */
export const NODE_IDS = ['b-node', 'c-node', 'a-media'];

/** A free TCP port on loopback. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Spawns a helper process (redis-server, haproxy) that is killed when the
 * test process exits, whatever happens. Keeps the end of its output.
 */
function helperProcess(bin, args) {
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  proc.once('exit', () => process.removeListener('exit', killOnExit));
  let log = '';
  const keep = (d) => {
    log += d;
    if (log.length > 200000) log = log.slice(-100000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
    proc.once('error', (err) => resolve({ error: err.message }));
  });
  return {
    proc,
    exited,
    log: () => log,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

async function startRedis() {
  const port = await freePort();
  const redis = helperProcess('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no']);
  opened('redis-server', () => redis.kill());
  const cli = async (...args) => (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])).stdout;
  await until('redis-server to answer', async () => (await cli('PING')).trim() === 'PONG', { timeout: 10000 });
  return { port, url: `redis://127.0.0.1:${port}`, cli };
}

/** `GET /api/cluster` of one node, with the cluster secret. */
export async function clusterStatus(node) {
  const res = await fetch(`${node.url}/api/cluster`, { headers: { Authorization: `Bearer ${CLUSTER_SECRET}` } });
  if (!res.ok) throw new Error(`/api/cluster of ${node.id}: HTTP ${res.status}`);
  return res.json();
}

export function alive(node) {
  return node.proc.exitCode === null && node.proc.signalCode === null;
}

async function startNode(id, redis) {
  const server = await startServer([
    '--tcp-port', '0', '--public-ip', '127.0.0.1', '--dev', 'true', '--token-secret', TOKEN_SECRET,
    '--redis', redis.url, '--cluster-secret', CLUSTER_SECRET, '--node-id', id,
  ]);
  const node = { ...server, id };
  opened(`node ${id}`, () => server.stop({ crash: true }));
  return node;
}

/** HAProxy's view of one backend's servers: name → status ("UP", "DOWN", "UP 1/2", ...). */
export async function lbServers(lb, backend) {
  const csv = await (await fetch(`http://127.0.0.1:${lb.statsPort}/stats;csv`)).text();
  const lines = csv.trim().split('\n');
  const header = lines[0].replace(/^# /, '').split(',');
  const col = (name) => header.indexOf(name);
  const out = {};
  for (const line of lines.slice(1)) {
    const f = line.split(',');
    if (f[col('pxname')] === backend && !['FRONTEND', 'BACKEND'].includes(f[col('svname')])) out[f[col('svname')]] = f[col('status')];
  }
  return out;
}

/**
 * HAProxy in front of the nodes. Every request goes round-robin to the
 * nodes that answer /readyz with 200; the WebSockets have a backend of
 * their own (round-robin among WebSockets only, so each page's signaling
 * lands on a known node), which names the node in the handshake response.
 */
async function startHaproxy(nodes) {
  const port = await freePort();
  const statsPort = await freePort();
  // In id order: the first WebSocket goes to a-media, the second to b-node.
  const servers = [...nodes].sort((x, y) => x.id.localeCompare(y.id))
    .map((n) => `  server ${n.id} ${new URL(n.url).host} check`).join('\n');
  const backend = (name, extra = '') => `backend ${name}
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 500 fall 2 rise 2
${extra}${servers}
`;
  const cfg = `global
  maxconn 2000

defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  retries 3
  # A connection refused by a node that just died is retried on another one.
  option redispatch 1

frontend chorus
  bind 127.0.0.1:${port}
  acl signaling path /ws
  use_backend chorus_ws if signaling
  default_backend chorus

${backend('chorus')}
${backend('chorus_ws', '  http-response set-header X-Chorus-Node %s\n')}
listen stats
  bind 127.0.0.1:${statsPort}
  stats enable
  stats uri /stats
`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chorus-haproxy-'));
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  const haproxy = helperProcess('haproxy', ['-f', file, '-db']);
  opened('haproxy', async () => {
    await haproxy.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  const lb = { ...haproxy, port, statsPort, url: `http://127.0.0.1:${port}` };
  await until('HAProxy to see every node up', async () => {
    if (haproxy.proc.exitCode !== null) throw new Error(`haproxy exited: ${haproxy.log()}`);
    for (const b of ['chorus', 'chorus_ws']) {
      const s = await lbServers(lb, b);
      if (!nodes.every((n) => s[n.id] === 'UP')) return null;
    }
    return true;
  }, { timeout: 15000 });
  return lb;
}

/**
 * redis-server, the three nodes (b-node first, alone, so it coordinates)
 * and HAProxy. Returns { redis, nodes: {id: node}, lb, coordinator() }.
 */
export async function startCluster() {
  const redis = await startRedis();
  const nodes = {};
  for (const id of NODE_IDS) {
    nodes[id] = await startNode(id, redis);
    if (id === NODE_IDS[0]) {
      await until(`${id} to coordinate`, async () => (await clusterStatus(nodes[id])).coordinator === id, { timeout: 15000 });
    }
  }
  for (const n of Object.values(nodes)) {
    await until(`${n.id} to see three nodes and the coordinator`, async () => {
      const s = await clusterStatus(n);
      return s.nodes.length === 3 && s.coordinator === NODE_IDS[0];
    }, { timeout: 15000 });
  }
  const lb = await startHaproxy(Object.values(nodes));
  return {
    redis,
    nodes,
    lb,
    /** The coordinator as the live nodes see it. */
    async coordinator() {
      for (const n of Object.values(nodes).filter(alive)) {
        const s = await clusterStatus(n).catch(() => null);
        if (s && s.coordinator && nodes[s.coordinator] && alive(nodes[s.coordinator])) return nodes[s.coordinator];
      }
      return null;
    },
  };
}

/**
 * The node carrying `roomId`'s media, from the coordinator's placements;
 * Redis's `chorus:rooms` must say the same. Waits until both name a live
 * node other than `not`.
 */
export async function mediaNodeOf(cluster, roomId, { not = null, timeout = 15000 } = {}) {
  return until(`the media node of room ${roomId}${not ? ` to be another than ${not}` : ''}`, async () => {
    const coord = await cluster.coordinator();
    if (!coord) return null;
    const status = await clusterStatus(coord);
    const placed = Object.entries(status.placements || {}).filter(([, rooms]) => rooms.includes(roomId)).map(([id]) => id);
    const inRedis = (await cluster.redis.cli('HGET', 'chorus:rooms', roomId)).trim();
    if (placed.length !== 1 || placed[0] !== inRedis || placed[0] === not || !alive(cluster.nodes[placed[0]])) return null;
    return { id: placed[0], coordinator: coord.id, nodes: status.nodes };
  }, { timeout });
}

/** The remote address (ip:port) and protocol of the candidate pair the page's media connection uses now. */
export async function mediaPath(page) {
  const pair = await candidatePair(page);
  const remote = pair && pair.remote;
  return remote ? { address: `${remote.address ?? remote.ip}:${remote.port}`, protocol: remote.protocol } : null;
}

/** Waits until the page's media goes to one of `nodeInfo`'s media addresses (UDP ports, or its ICE-TCP port). */
export async function expectMediaOn(page, nodeInfo) {
  const addresses = [...nodeInfo.media, nodeInfo.tcp];
  return until(`the media connection to reach ${nodeInfo.id} (${addresses.join(', ')})`, async () => {
    const p = await mediaPath(page);
    return p && addresses.includes(p.address) ? p : null;
  });
}
