/**
 * Run by idle-memory.test.ts as `node --expose-gc --import tsx ws-idle-memory.child.ts`: prints
 * the JS heap bytes one idle connection holds over TCP and over WebSocket (CONNECTed, CONNACK
 * read; clients in this process, the same kind of socket on both transports), full GCs.
 */
import net from 'node:net';
import { encode } from '@mqtt-edge/codec';
import { Broker } from '../src/index.ts';
import { heapAfterGc } from './helpers/gc-heap.ts';
import { frame, OP, upgradeRequest } from './helpers/ws-raw.ts';

const N = 1000;
const b = new Broker({
  listeners: [
    { port: 0, host: '127.0.0.1', protocol: 'mqtt' },
    { port: 0, host: '127.0.0.1', protocol: 'websockets' },
  ],
  sysInterval: 0,
});
await b.listen();

/** Opens one client; resolves with its socket once the CONNACK came. */
function open(port: number, ws: boolean, i: number): Promise<net.Socket> {
  const connect = encode(
    { type: 'connect', protocolVersion: 4, clientId: `c${i}`, clean: true, keepalive: 0 },
    4,
  );
  const connack = Buffer.from([0x20, 2, 0, 0]);
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      if (ws) s.write(upgradeRequest());
      s.write(ws ? frame(OP.binary, connect) : connect);
    });
    let got = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.indexOf(connack) < 0) return;
      s.off('data', onData);
      resolve(s);
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

const out: Record<string, number> = {};
for (const [name, port] of [
  ['tcp', b.addresses[0].port],
  ['ws', b.addresses[1].port],
] as const) {
  const before = heapAfterGc();
  const sockets: net.Socket[] = [];
  for (let i = 0; i < N; i++) sockets.push(await open(port, name === 'ws', i));
  await new Promise((r) => setTimeout(r, 100));
  if (b.connections.size !== N) throw new Error(`${b.connections.size} connections, not ${N}`);
  out[name] = (heapAfterGc() - before) / N;
  for (const s of sockets) s.destroy();
  while (b.connections.size > 0) await new Promise((r) => setTimeout(r, 20));
}
await b.close();
console.log(JSON.stringify(out));
