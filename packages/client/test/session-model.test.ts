/**
 * Random runs of publishes, acknowledgements (in any order), dropped connections and resumed or
 * lost sessions against a server model. Invariants: a new PUBLISH never reuses a packet id the
 * server still holds, every publish completes exactly once, nothing is left in the outbox.
 */
import type { Packet, PublishPacket } from '@mqtt-edge/codec';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Peer } from './helpers/peer.ts';

type Step =
  | { kind: 'publish'; qos: 0 | 1 | 2 }
  | { kind: 'ack'; pick: number }
  | { kind: 'drop'; sessionPresent: boolean }
  | { kind: 'receive'; qos: 0 | 1 | 2; id: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('publish' as const),
      qos: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
    }),
  },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('ack' as const), pick: fc.nat(1000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), sessionPresent: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('receive' as const),
      qos: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
      id: fc.integer({ min: 1, max: 8 }),
    }),
  },
);

describe('session against a random but correct server', () => {
  it('ids never collide, every publish completes once, the outbox ends empty', () => {
    fc.assert(
      fc.property(
        fc.array(step, { minLength: 1, maxLength: 120 }),
        fc.integer({ min: 1, max: 6 }),
        (steps, window) => {
          const peer = new Peer({
            protocolVersion: 5,
            clientId: 'm',
            clean: false,
            sessionExpiryInterval: 60,
          });
          // server state: what it holds per packet id
          let held = new Map<number, 'published' | 'pubrec'>();
          const completions = new Map<number, number>();
          const seqs: number[] = [];
          let connected = false;

          const serverReads = (packets: Packet[]) => {
            for (const p of packets) {
              if (p.type === 'publish' && p.qos > 0) {
                const id = p.packetId!;
                if (!p.dup) expect(held.has(id), `new PUBLISH reuses held id ${id}`).toBe(false);
                if (!held.has(id)) held.set(id, 'published');
              } else if (p.type === 'pubrel') {
                held.set(p.packetId, 'pubrec');
              }
            }
          };
          const events = () => {
            for (const e of peer.events())
              if (e.type === 'published' && e.seq !== undefined)
                completions.set(e.seq, (completions.get(e.seq) ?? 0) + 1);
          };
          const connect = (sessionPresent: boolean) => {
            if (!sessionPresent) held = new Map();
            peer.session.open(peer.now);
            peer.packets(); // CONNECT
            peer.send({
              type: 'connack',
              sessionPresent,
              reasonCode: 0,
              properties: { receiveMaximum: window },
            });
            connected = true;
            const resent = peer.packets();
            // With the session kept, everything the server holds comes again first [MQTT-4.4.0-1].
            for (const [id, state] of held) {
              const again = resent.find(
                (p) =>
                  (state === 'published' ? p.type === 'publish' && p.dup : p.type === 'pubrel') &&
                  'packetId' in p &&
                  p.packetId === id,
              );
              expect(again, `resend of ${state} id ${id}`).toBeDefined();
            }
            serverReads(resent);
            events();
          };
          const ackOne = (pick: number) => {
            const ids = [...held.keys()];
            if (ids.length === 0) return;
            const id = ids[pick % ids.length];
            const state = held.get(id)!;
            const inflightQos = (
              peer.session as unknown as { inflight: Map<number, { message: { qos: number } }> }
            ).inflight.get(id)?.message.qos;
            if (state === 'pubrec') {
              held.delete(id);
              peer.send({ type: 'pubcomp', packetId: id });
            } else if (inflightQos === 2) {
              peer.send({ type: 'pubrec', packetId: id });
            } else {
              held.delete(id);
              peer.send({ type: 'puback', packetId: id });
            }
            serverReads(peer.packets());
            events();
          };

          connect(false);
          for (const s of steps) {
            if (s.kind === 'publish') {
              const t = peer.session.publish(
                { topic: 't', payload: new Uint8Array(1), qos: s.qos, retain: false },
                peer.now,
              );
              if (t.seq !== undefined) seqs.push(t.seq);
              if (connected) serverReads(peer.packets());
              events();
            } else if (s.kind === 'ack') {
              if (connected) ackOne(s.pick);
            } else if (s.kind === 'drop') {
              peer.drop();
              peer.packets();
              events();
              connect(s.sessionPresent);
            } else if (connected) {
              const p: PublishPacket = {
                type: 'publish',
                topic: 'in',
                payload: new Uint8Array(0),
                qos: s.qos,
                retain: false,
                dup: false,
              };
              if (s.qos > 0) p.packetId = s.id;
              peer.send(p);
              // the client's PUBACK / PUBREC / PUBCOMP go to the server; it releases QoS 2 at once
              for (const r of peer.packets())
                if (r.type === 'pubrec') peer.send({ type: 'pubrel', packetId: r.packetId });
              peer.packets();
              events();
            }
            expect(peer.session.inflightCount).toBeLessThanOrEqual(window);
          }
          // Drain: acknowledge everything.
          for (
            let guard = 0;
            guard < 10_000 && (held.size > 0 || peer.session.outbox!.stats().count > 0);
            guard++
          )
            ackOne(0);
          expect(peer.session.outbox!.stats().count).toBe(0);
          for (const seq of seqs) expect(completions.get(seq), `seq ${seq}`).toBe(1);
        },
      ),
      { numRuns: 300, seed: 20261125 },
    );
  });
});
