/**
 * Issue 18.2: the WebSocket framing broker-lite does on the upgraded socket itself (ws-stream),
 * unit tests on a stand-in socket (what is written, ended, paused): every frame form, every
 * way the bytes can be cut, pause/resume, the close handshake, and hostile frames, each ending
 * in a close frame with its RFC 6455 code. Over real sockets: issue18-ws-frames.test.ts.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConnState } from '../src/conn-state.ts';
import { frameOf, unmask, WebSocketStream } from '../src/ws-stream.ts';
import { frame, OP } from './helpers/ws-raw.ts';

class FakeSocket extends EventEmitter {
  written: Buffer[] = [];
  ended = false;
  destroyed = false;
  paused = false;
  writableLength = 0;
  remoteAddress = '127.0.0.1';
  remotePort = 1;
  write(b: Buffer): boolean {
    this.written.push(Buffer.from(b));
    return this.writableLength < 16 * 1024;
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  /** Server frames written so far: [opcode, payload]. */
  frames(): Array<[number, Buffer]> {
    const all = Buffer.concat(this.written);
    const out: Array<[number, Buffer]> = [];
    let at = 0;
    while (at < all.length) {
      expect(all[at + 1] & 0x80).toBe(0); // server frames are never masked
      let len = all[at + 1] & 0x7f;
      let h = 2;
      if (len === 126) {
        len = all.readUInt16BE(at + 2);
        h = 4;
      } else if (len === 127) {
        len = Number(all.readBigUInt64BE(at + 2));
        h = 10;
      }
      out.push([all[at] & 0x0f, all.subarray(at + h, at + h + len)]);
      at += h + len;
    }
    return out;
  }
  closeCode(): number | undefined {
    const c = this.frames().find(([op]) => op === OP.close);
    return c === undefined || c[1].length < 2 ? undefined : c[1].readUInt16BE(0);
  }
}

const LIMITS = { beforeConnack: 1000, afterConnack: 100_000 };

function make(limits = LIMITS): {
  sock: FakeSocket;
  stream: WebSocketStream;
  data: Buffer[];
  errors: Error[];
} {
  const sock = new FakeSocket();
  const stream = new WebSocketStream(sock as unknown as net.Socket, limits);
  const data: Buffer[] = [];
  const errors: Error[] = [];
  stream.on('data', (d: Buffer) => data.push(Buffer.from(d)));
  stream.on('error', (e: Error) => errors.push(e));
  return { sock, stream, data, errors };
}

function feed(sock: FakeSocket, bytes: Buffer, pieces: number[] = [bytes.length]): void {
  let at = 0;
  for (const n of pieces) {
    sock.emit('data', Buffer.from(bytes.subarray(at, at + n)));
    at += n;
  }
  if (at < bytes.length) sock.emit('data', Buffer.from(bytes.subarray(at)));
}

const bytes = (n: number, seed = 1): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('issue 18.2: frames out (frameOf) and unmasking', () => {
  it('issue 18.2: server frames use the 7-bit, 16-bit and 64-bit lengths at their bounds', () => {
    for (const [n, head] of [
      [0, [0x82, 0]],
      [125, [0x82, 125]],
      [126, [0x82, 126, 0, 126]],
      [65_535, [0x82, 126, 0xff, 0xff]],
      [65_536, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]],
    ] as const) {
      const payload = bytes(n);
      const f = frameOf(0x82, payload);
      expect([...f.subarray(0, head.length)]).toEqual(head);
      expect(f.subarray(head.length).equals(payload)).toBe(true);
    }
  });

  it('issue 18.2: unmask at every phase and length is the XOR with the mask from that phase', () => {
    const mask = 0x37fa213d;
    const key = [0x37, 0xfa, 0x21, 0x3d];
    for (let phase = 0; phase < 8; phase++)
      for (let n = 0; n < 12; n++) {
        const plain = bytes(n, phase);
        const data = Buffer.from(plain.map((b, i) => b ^ key[(phase + i) & 3]));
        unmask(data, mask, phase);
        expect([...data]).toEqual([...plain]);
      }
  });
});

describe('issue 18.2: frames in', () => {
  // A fragmented message with a ping inside, a 16-bit-length frame, a 64-bit-length one, an
  // empty binary frame: all of a client's legal forms in one stream.
  const big = bytes(70_000, 7);
  const mid = bytes(300, 3);
  const stream = Buffer.concat([
    frame(OP.binary, Uint8Array.of(1, 2), { fin: false }),
    frame(OP.ping, Uint8Array.of(9, 9, 9)),
    frame(OP.continuation, new Uint8Array(0), { fin: false }),
    frame(OP.continuation, Uint8Array.of(3, 4, 5)),
    frame(OP.binary, mid),
    frame(OP.binary, new Uint8Array(0)),
    frame(OP.binary, big),
    frame(OP.pong, Uint8Array.of(1)),
  ]);
  const expected = Buffer.concat([Buffer.of(1, 2, 3, 4, 5), mid, big]);

  it('issue 18.2: whole, the payloads come out in order and the ping is answered with its payload', () => {
    const t = make({ beforeConnack: 100_000, afterConnack: 100_000 });
    feed(t.sock, stream);
    expect(Buffer.concat(t.data).equals(expected)).toBe(true);
    expect(t.sock.frames()).toEqual([[OP.pong, Buffer.of(9, 9, 9)]]);
    expect(t.errors).toEqual([]);
  });

  it('issue 18.2: trickled one byte at a time, the same', () => {
    const t = make({ beforeConnack: 100_000, afterConnack: 100_000 });
    feed(t.sock, stream, new Array(stream.length).fill(1));
    expect(Buffer.concat(t.data).equals(expected)).toBe(true);
    expect(t.sock.frames()).toEqual([[OP.pong, Buffer.of(9, 9, 9)]]);
  });

  it('issue 18.2: cut in two at every byte, the same', () => {
    const small = Buffer.concat([
      frame(OP.binary, Uint8Array.of(1, 2), { fin: false }),
      frame(OP.ping, Uint8Array.of(9, 9, 9)),
      frame(OP.continuation, Uint8Array.of(3, 4, 5)),
      frame(OP.binary, mid),
    ]);
    const want = Buffer.concat([Buffer.of(1, 2, 3, 4, 5), mid]);
    for (let cut = 1; cut < small.length; cut++) {
      const t = make();
      feed(t.sock, small, [cut]);
      expect(Buffer.concat(t.data).equals(want), `cut at ${cut}`).toBe(true);
      expect(t.sock.frames(), `cut at ${cut}`).toEqual([[OP.pong, Buffer.of(9, 9, 9)]]);
    }
  });

  it('issue 18.2: a pause inside a chunk holds the rest; resume reads it; a close meanwhile waits for it', () => {
    const t = make();
    t.stream.once('data', () => t.stream.pause());
    feed(t.sock, Buffer.concat([frame(OP.binary, Uint8Array.of(1)), frame(OP.binary, Uint8Array.of(2))]));
    expect(t.data).toEqual([Buffer.of(1)]);
    expect(t.sock.paused).toBe(true);
    let closed = false;
    t.stream.on('close', () => {
      closed = true;
    });
    t.sock.emit('close');
    expect(closed).toBe(false);
    t.stream.resume();
    expect(t.data).toEqual([Buffer.of(1), Buffer.of(2)]);
    expect(closed).toBe(true);
  });

  it('issue 18.2: a pause and resume from inside a data event go on with the same chunk', () => {
    const t = make();
    t.stream.once('data', () => {
      t.stream.pause();
      t.stream.resume();
    });
    feed(t.sock, Buffer.concat([frame(OP.binary, Uint8Array.of(1)), frame(OP.binary, Uint8Array.of(2))]));
    expect(t.data).toEqual([Buffer.of(1), Buffer.of(2)]);
  });

  it('issue 18.2: writes are one binary frame each; false above the high-water mark, then drain', () => {
    const t = make();
    expect(t.stream.write(Uint8Array.of(0x20, 2, 0, 0))).toBe(true);
    expect(t.sock.frames()).toEqual([[OP.binary, Buffer.of(0x20, 2, 0, 0)]]);
    t.sock.writableLength = 20_000;
    expect(t.stream.write(Uint8Array.of(0xd0, 0))).toBe(false);
    let drained = 0;
    t.stream.on('drain', () => drained++);
    t.sock.writableLength = 0;
    t.sock.emit('drain');
    t.sock.emit('drain'); // only the one asked for is passed on
    expect(drained).toBe(1);
  });
});

describe('issue 18.2: the close handshake', () => {
  it("issue 18.2: the client's close is echoed with its code, then the socket ended; nothing after it is read", () => {
    const t = make();
    feed(
      t.sock,
      Buffer.concat([
        frame(OP.close, Uint8Array.of(0x03, 0xe9, 0x62, 0x79)),
        frame(OP.binary, Uint8Array.of(1)),
      ]),
    );
    expect(t.sock.closeCode()).toBe(1001);
    expect(t.sock.ended).toBe(true);
    expect(t.data).toEqual([]);
    expect(t.stream.write(Uint8Array.of(1))).toBe(false);
  });

  it('issue 18.2: an empty close is echoed empty', () => {
    const t = make();
    feed(t.sock, frame(OP.close));
    expect(t.sock.frames()).toEqual([[OP.close, Buffer.alloc(0)]]);
    expect(t.sock.ended).toBe(true);
  });

  it('issue 18.2: end() sends close 1000 and ends the socket once the client answers', () => {
    const t = make();
    t.stream.end();
    expect(t.sock.closeCode()).toBe(1000);
    expect(t.sock.ended).toBe(false);
    feed(t.sock, frame(OP.close, Uint8Array.of(0x03, 0xe8)));
    expect(t.sock.ended).toBe(true);
    expect(t.sock.frames().length).toBe(1); // not echoed a second time
  });

  it('issue 18.2: the client going away (FIN) without a close ends this side; close follows the socket', () => {
    const t = make();
    let closed = 0;
    t.stream.on('close', () => closed++);
    t.sock.emit('end');
    expect(t.sock.ended).toBe(true);
    t.sock.emit('close');
    t.sock.emit('close');
    expect(closed).toBe(1);
    expect(t.stream.destroyed).toBe(true);
  });
});

describe('issue 18.2: hostile frames end in a close frame with the RFC 6455 code', () => {
  /** A binary frame header announcing (hi << 32) + lo bytes in the 64-bit form. */
  const u64 = (hi: number, lo: number): Buffer =>
    frame(OP.binary, new Uint8Array(0), { declaredLength: (BigInt(hi) << 32n) | BigInt(lo) });
  const cases: Array<[string, Buffer, number]> = [
    ['unmasked binary frame', frame(OP.binary, Uint8Array.of(0x10), { mask: false }), 1002],
    ['unmasked ping', frame(OP.ping, new Uint8Array(0), { mask: false }), 1002],
    ['a 2^63 length', frame(OP.binary, new Uint8Array(0), { declaredLength: 2n ** 63n }), 1002],
    ['a 64-bit length with every bit set', u64(0xffffffff, 0xffffffff), 1002],
    ['a 64-bit length of 2^32 (top bit clear)', u64(1, 0), 1009],
    ['a 64-bit length of 2^53 - 1', u64(0x1fffff, 0xffffffff), 1009],
    ['a ping of 126 bytes', frame(OP.ping, new Uint8Array(126)), 1002],
    ['a close of 126 bytes (16-bit length)', frame(OP.close, new Uint8Array(126)), 1002],
    ['a fragmented ping', frame(OP.ping, new Uint8Array(2), { fin: false }), 1002],
    ['a fragmented close', frame(OP.close, Uint8Array.of(3, 0xe8), { fin: false }), 1002],
    ['RSV1', frame(OP.binary, Uint8Array.of(1), { rsv: 4 }), 1002],
    ['RSV2', frame(OP.binary, Uint8Array.of(1), { rsv: 2 }), 1002],
    ['RSV3', frame(OP.binary, Uint8Array.of(1), { rsv: 1 }), 1002],
    ['a text frame', frame(OP.text, Buffer.from('MQTT')), 1003],
    ['a continuation with nothing to continue', frame(OP.continuation, Uint8Array.of(1)), 1002],
    [
      'a binary frame inside a fragmented message',
      Buffer.concat([frame(OP.binary, Uint8Array.of(1), { fin: false }), frame(OP.binary, Uint8Array.of(2))]),
      1002,
    ],
    ['a close with a 1-byte payload', frame(OP.close, Uint8Array.of(3)), 1002],
    ['a close with code 1005 (never on the wire)', frame(OP.close, Uint8Array.of(0x03, 0xed)), 1002],
    ['a close with code 999', frame(OP.close, Uint8Array.of(0x03, 0xe7)), 1002],
    [
      'a message over the limit before CONNACK',
      frame(OP.binary, new Uint8Array(0), { declaredLength: 1001 }),
      1009,
    ],
    [
      'fragments adding up over the limit before CONNACK',
      Buffer.concat([
        frame(OP.binary, new Uint8Array(600), { fin: false }),
        frame(OP.continuation, new Uint8Array(0), { declaredLength: 401 }),
      ]),
      1009,
    ],
  ];
  for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
    cases.push([`reserved opcode ${op}`, frame(op, Uint8Array.of(1)), 1002]);

  for (const [name, input, code] of cases) {
    it(`issue 18.2: ${name} -> ${code}`, () => {
      for (const pieces of [[input.length], new Array(input.length).fill(1)]) {
        const t = make();
        let closed = false;
        t.stream.on('close', () => {
          closed = true;
        });
        feed(t.sock, input, pieces);
        // what follows a failure is not read
        feed(t.sock, frame(OP.binary, Uint8Array.of(0x55)));
        expect(t.sock.closeCode()).toBe(code);
        expect(t.sock.frames().length).toBe(1);
        expect(t.sock.ended).toBe(true);
        expect(t.data.some((d) => d.includes(0x55))).toBe(false);
        t.sock.emit('close');
        expect(closed).toBe(true);
        expect(t.errors.length).toBe(1);
      }
    });
  }

  it('issue 18.2: after CONNACK the larger limit applies, from the reader state', () => {
    const t = make();
    const reader = { state: ConnState.AwaitConnect };
    t.stream.reader = reader;
    reader.state = ConnState.Connected;
    feed(t.sock, frame(OP.binary, new Uint8Array(50_000)));
    expect(Buffer.concat(t.data).length).toBe(50_000);
    feed(t.sock, frame(OP.binary, new Uint8Array(0), { declaredLength: 100_001 }));
    expect(t.sock.closeCode()).toBe(1009);
  });

  it('issue 18.2: a client that does not read its pongs gets no more of them', () => {
    const t = make();
    t.sock.writableLength = 20_000;
    feed(t.sock, Buffer.concat(new Array(100).fill(frame(OP.ping, new Uint8Array(125)))));
    expect(t.sock.written.length).toBe(0);
    t.sock.writableLength = 0;
    feed(t.sock, frame(OP.ping, Uint8Array.of(7)));
    expect(t.sock.frames()).toEqual([[OP.pong, Buffer.of(7)]]);
  });

  it('issue 18.2: a truncated frame then the end of the stream: ended, closed, nothing held', () => {
    for (const cut of [1, 2, 5, 7, 20]) {
      const t = make();
      feed(t.sock, frame(OP.binary, new Uint8Array(100)).subarray(0, cut));
      t.sock.emit('end');
      expect(t.sock.ended).toBe(true);
      t.sock.emit('close');
      expect(t.stream.destroyed).toBe(true);
      expect((t.stream as unknown as { part: unknown }).part).toBeNull();
    }
  });
});
