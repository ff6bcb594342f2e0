import type { Duplex } from 'node:stream';
import {
  type DataFrame,
  type Frame,
  FrameDecoder,
  type HelloFrame,
  type ResultFrame,
} from '@mqtt-edge/serial-protocol';

/** The agent's side in tests: decodes what arrives and lets a test await a frame by predicate. */
export class HostReader {
  readonly decoder = new FrameDecoder();
  readonly frames: Frame[] = [];
  private waiters: Array<{ pred: (f: Frame) => boolean; resolve: (f: Frame) => void; from: number }> = [];

  feed(bytes: Uint8Array): void {
    for (const f of this.decoder.push(bytes)) {
      this.frames.push(f);
      const i = this.frames.length - 1;
      this.waiters = this.waiters.filter((w) => {
        if (i >= w.from && w.pred(f)) {
          w.resolve(f);
          return false;
        }
        return true;
      });
    }
  }

  attach(stream: Duplex | { on(ev: 'data', cb: (b: Buffer) => void): unknown }): this {
    stream.on('data', (b: Buffer) => this.feed(b));
    return this;
  }

  data(pred: (f: DataFrame) => boolean = () => true, timeoutMs?: number, from?: number): Promise<DataFrame> {
    return this.next((f) => f.type === 'data' && pred(f), timeoutMs, from) as Promise<DataFrame>;
  }
  hello(
    pred: (f: HelloFrame) => boolean = () => true,
    timeoutMs?: number,
    from?: number,
  ): Promise<HelloFrame> {
    return this.next((f) => f.type === 'hello' && pred(f), timeoutMs, from) as Promise<HelloFrame>;
  }
  result(
    pred: (f: ResultFrame) => boolean = () => true,
    timeoutMs?: number,
    from?: number,
  ): Promise<ResultFrame> {
    return this.next((f) => f.type === 'result' && pred(f), timeoutMs, from) as Promise<ResultFrame>;
  }

  /** The first frame matching `pred` received at or after index `from` (default: any time). */
  next<T extends Frame>(pred: (f: Frame) => f is T, timeoutMs?: number, from?: number): Promise<T>;
  next(pred: (f: Frame) => boolean, timeoutMs?: number, from?: number): Promise<Frame>;
  next(pred: (f: Frame) => boolean, timeoutMs = 5000, from = 0): Promise<Frame> {
    const seen = this.frames.slice(from).find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching frame within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        pred,
        from,
        resolve: (f) => {
          clearTimeout(t);
          resolve(f);
        },
      });
    });
  }
}

export const isData = (f: Frame): f is Extract<Frame, { type: 'data' }> => f.type === 'data';
export const isHello = (f: Frame): f is Extract<Frame, { type: 'hello' }> => f.type === 'hello';
export const isResult = (f: Frame): f is Extract<Frame, { type: 'result' }> => f.type === 'result';

/** Rejects with `what` if `p` does not settle in time, so a hang names the step that hung. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
