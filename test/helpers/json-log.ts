/**
 * A child process's JSON log on stderr, parsed line by line as it arrives, with waiters for a
 * matching line: what the process-level tests (agent, firmware-sim, broker-lite CLIs) await
 * instead of sleeping.
 */
import type { ChildProcess } from 'node:child_process';

export interface LogWaiter<L> {
  pred: (l: L) => boolean;
  resolve: (l: L) => void;
}

/** What a child's JSON log has told so far, and who waits for a line. */
export interface JsonLogState<L> {
  lines: L[];
  waiters: Array<LogWaiter<L>>;
  /** The last 4,000 characters of stderr, JSON or not, for failure messages. */
  stderrTail: string;
}

/** Reads a child's stderr as JSON lines (other lines are kept only in the tail). */
export function followJsonLog<L>(child: ChildProcess, st: JsonLogState<L>): void {
  let buf = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    buf += s;
    st.stderrTail = (st.stderrTail + s).slice(-4000);
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let l: L;
      try {
        l = JSON.parse(line) as L;
      } catch {
        continue;
      }
      st.lines.push(l);
      for (const w of [...st.waiters]) {
        if (w.pred(l)) {
          st.waiters.splice(st.waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
}
