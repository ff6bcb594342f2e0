import { matchTopic } from '@mqtt-edge/codec';
import type { BridgeTopicConfig } from './config-bridge.ts';

/**
 * Mosquitto's bridge topic remapping. For `topic PATTERN DIR QOS LOCAL REMOTE`, the local side
 * subscribes to LOCAL+PATTERN and the remote side to REMOTE+PATTERN; a message crossing the
 * bridge loses one prefix and gains the other. An empty PATTERN ("") means the prefix is the
 * whole topic.
 */
export interface TopicRoute {
  localFilter: string;
  remoteFilter: string;
  localPrefix: string;
  remotePrefix: string;
  qos: 0 | 1 | 2;
}

export function routesOf(topics: BridgeTopicConfig[], dir: 'in' | 'out'): TopicRoute[] {
  const out: TopicRoute[] = [];
  for (const t of topics) {
    if (t.direction !== dir && t.direction !== 'both') continue;
    out.push({
      localFilter: t.localPrefix + t.pattern,
      remoteFilter: t.remotePrefix + t.pattern,
      localPrefix: t.localPrefix,
      remotePrefix: t.remotePrefix,
      qos: t.qos,
    });
  }
  return out;
}

/** Local topic -> remote topic by the first matching `out` route; undefined when none matches. */
export function toRemote(routes: TopicRoute[], topic: string): { topic: string; qos: 0 | 1 | 2 } | undefined {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i];
    if (!matchTopic(r.localFilter, topic)) continue;
    const rest = topic.startsWith(r.localPrefix) ? topic.slice(r.localPrefix.length) : topic;
    return { topic: r.remotePrefix + rest, qos: r.qos };
  }
  return undefined;
}

/** Remote topic -> local topic by the first matching `in` route. */
export function toLocal(routes: TopicRoute[], topic: string): { topic: string; qos: 0 | 1 | 2 } | undefined {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i];
    if (!matchTopic(r.remoteFilter, topic)) continue;
    const rest = topic.startsWith(r.remotePrefix) ? topic.slice(r.remotePrefix.length) : topic;
    return { topic: r.localPrefix + rest, qos: r.qos };
  }
  return undefined;
}

/** Distinct filters with the highest QoS asked for each (one SUBSCRIBE entry per filter). */
export function filtersOf(
  routes: TopicRoute[],
  side: 'local' | 'remote',
): Array<{ filter: string; qos: 0 | 1 | 2 }> {
  const m = new Map<string, 0 | 1 | 2>();
  for (const r of routes) {
    const f = side === 'local' ? r.localFilter : r.remoteFilter;
    const q = m.get(f);
    if (q === undefined || r.qos > q) m.set(f, r.qos);
  }
  return [...m].map(([filter, qos]) => ({ filter, qos }));
}
