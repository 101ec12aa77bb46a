// A network of the test's own for a browser that must not reach the media
// node over UDP: a namespace for the browser, joined to the test's own
// namespace by a veth pair (addresses from 198.18.0.0/15, reserved for
// benchmarks, so nothing leaves), and nftables in the browser's namespace
// that drop what is blocked, counting it. Chromium runs inside through a
// two-line wrapper given to playwright as its executable (playwright talks
// to it over pipes, which `ip netns exec` passes on).
//
// Needs root and a network namespace of its own (tests/run runs the browser
// tests under `unshare -n`). Everything made here goes in `remove()`, which
// also runs should the test process exit first.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The server's side of the veth pair, and the browser's. */
export const SERVER_IP = '198.18.7.1';
export const BROWSER_IP = '198.18.7.2';

function run(cmd, args, input) {
  return execFileSync(cmd, args, { input, encoding: 'utf8', stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
}

/**
 * Makes the browser's namespace. It drops every UDP datagram toward the
 * server (unless `blockUdp` is false: a control with the same network),
 * and TCP toward `blockTcpPorts` (e.g. the media node's ICE-TCP port; the
 * page itself comes over TCP).
 * Resolves once both ends of the link are up (a link coming up later is a
 * network change to Chromium, too).
 * @returns {Promise<{ chromium: string, dropped: () => {udp: number, tcp: number}, remove: () => void }>}
 */
export async function browserNamespace({ blockUdp = true, blockTcpPorts = [] } = {}) {
  const name = `chorus-br-${process.pid}`;
  const hostEnd = `chs${process.pid}`;
  const browserEnd = `chb${process.pid}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chorus-netns-'));
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    process.removeListener('exit', remove);
    // Deleting one end of a veth pair deletes both.
    for (const args of [['link', 'del', hostEnd], ['netns', 'del', name]]) {
      try {
        run('ip', args);
      } catch {
        // Not made yet, or already gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', remove);
  try {
    run('ip', ['netns', 'add', name]);
    run('ip', ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', browserEnd, 'netns', name]);
    // No IPv6 link-local addresses: one that appears a moment later is a
    // "network change" to Chromium, which then aborts its page loads.
    run('ip', ['link', 'set', hostEnd, 'addrgenmode', 'none']);
    run('ip', ['-n', name, 'link', 'set', browserEnd, 'addrgenmode', 'none']);
    run('ip', ['addr', 'add', `${SERVER_IP}/30`, 'dev', hostEnd]);
    run('ip', ['link', 'set', hostEnd, 'up']);
    run('ip', ['-n', name, 'addr', 'add', `${BROWSER_IP}/30`, 'dev', browserEnd]);
    run('ip', ['-n', name, 'link', 'set', browserEnd, 'up']);
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    const tcp = blockTcpPorts.map((p) => `add rule inet t out ip daddr ${SERVER_IP} tcp dport ${Number(p)} counter name tcp_dropped drop`);
    run('ip', ['netns', 'exec', name, 'nft', '-f', '-'], [
      'add table inet t',
      "add chain inet t out { type filter hook output priority 0; }",
      'add counter inet t udp_dropped',
      'add counter inet t tcp_dropped',
      ...(blockUdp ? [`add rule inet t out ip daddr ${SERVER_IP} meta l4proto udp counter name udp_dropped drop`] : []),
      ...tcp,
      '',
    ].join('\n'));
  } catch (err) {
    remove();
    throw new Error(`cannot make the browser's network namespace (root in a namespace of its own needed): ${err.stderr || err.message}`);
  }
  const up = (ns, dev) => JSON.parse(run('ip', [...ns, '-j', 'link', 'show', 'dev', dev]))[0].operstate === 'UP';
  for (let i = 0; !(up([], hostEnd) && up(['-n', name], browserEnd)); i += 1) {
    if (i === 100) {
      remove();
      throw new Error('the veth pair did not come up in 5 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const chromium = path.join(dir, 'chromium');
  const real = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
  writeFileSync(chromium, `#!/bin/sh\nexec ip netns exec ${name} ${real} "$@"\n`, { mode: 0o755 });
  return {
    chromium,
    /** Packets dropped so far, by protocol. */
    dropped() {
      const counter = (c) => {
        const out = JSON.parse(run('ip', ['netns', 'exec', name, 'nft', '-j', 'list', 'counter', 'inet', 't', c]));
        const entry = out.nftables.find((e) => e.counter);
        return entry ? entry.counter.packets : 0;
      };
      return { udp: counter('udp_dropped'), tcp: counter('tcp_dropped') };
    },
    remove,
  };
}
