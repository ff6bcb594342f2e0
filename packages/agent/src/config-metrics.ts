/** The `metrics:` section (issue 14): the Prometheus endpoint, off unless `listen` is given. */
import { type Reader, show } from './config-reader.ts';

export interface MetricsConfig {
  /** As written: `127.0.0.1:9101`, `[::1]:9101`. */
  listen: string;
  host: string;
  /** 0: any free port (the log says which). */
  port: number;
}

export function readMetricsSection(r: Reader, v: unknown): MetricsConfig | undefined {
  const mt = r.object('metrics', v, ['listen']) ?? {};
  const listen = r.string('metrics.listen', mt.listen);
  if (listen === undefined) return undefined;
  const address = parseListen(listen);
  if (address === undefined) {
    r.problem(
      'metrics.listen',
      `must be HOST:PORT such as 127.0.0.1:9101 or [::1]:9101 (port 0..65535); got ${show(listen)}`,
    );
    return undefined;
  }
  return { listen, ...address };
}

/** `host:port`, `[v6]:port`; undefined when it is neither. */
function parseListen(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2], port };
}
