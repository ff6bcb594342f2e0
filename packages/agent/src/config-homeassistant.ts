/** The `homeassistant:` section (issue 14): MQTT discovery; its keys are Home Assistant's own names. */
import { topicNameProblem } from '@mqtt-edge/codec';
import { type Reader, show } from './config-reader.ts';

/** Home Assistant MQTT discovery (issue 14). Keys in the file: enabled, discovery_prefix, node_id. */
export interface HomeAssistantConfig {
  enabled: boolean;
  /** Home Assistant's discovery prefix (its default `homeassistant`); birth messages come on `{prefix}/status`. */
  discoveryPrefix: string;
  /** The `<node_id>` level of the discovery topics: `[A-Za-z0-9_-]`, default the agent id with other characters as `_`. */
  nodeId: string;
}

/** `agentId` names the default node id. */
export function readHomeAssistantSection(r: Reader, v: unknown, agentId: string): HomeAssistantConfig {
  const h = r.object('homeassistant', v, ['enabled', 'discovery_prefix', 'node_id']) ?? {};
  const discoveryPrefix = r.string('homeassistant.discovery_prefix', h.discovery_prefix) ?? 'homeassistant';
  const dp = topicNameProblem(discoveryPrefix);
  if (dp !== null) r.problem('homeassistant.discovery_prefix', dp);
  else if (/[+#]/.test(discoveryPrefix) || discoveryPrefix.endsWith('/'))
    r.problem('homeassistant.discovery_prefix', 'must not contain + or # nor end with /');
  let nodeId = r.string('homeassistant.node_id', h.node_id) ?? defaultNodeId(agentId);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) {
    r.problem(
      'homeassistant.node_id',
      `must be 1..64 of A-Z a-z 0-9 _ - (Home Assistant's rule for a discovery topic level); got ${show(nodeId)}`,
    );
    nodeId = 'agent';
  }
  return { enabled: r.bool('homeassistant.enabled', h.enabled, false), discoveryPrefix, nodeId };
}

/** `homeassistant.node_id` when not given: the agent id in Home Assistant's characters. */
export function defaultNodeId(agentId: string): string {
  return agentId.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** The section in the file's own keys. */
export function homeAssistantDocument(h: HomeAssistantConfig): Record<string, unknown> {
  return { enabled: h.enabled, discovery_prefix: h.discoveryPrefix, node_id: h.nodeId };
}
