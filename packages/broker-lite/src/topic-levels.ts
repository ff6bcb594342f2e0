/**
 * max_topic_levels (issue 12.3): a topic name or filter of more levels is refused. Each level
 * is a node in the subscription index and the retained store, so 32,000 of them in one 64 KB
 * filter cost megabytes. PUBLISH topic names are counted by the codec in the pass that reads
 * them (PacketParser maxTopicLevels); what is checked here is not on the publish path.
 */

/** No limit: the most levels a 65,535-byte topic can have. */
export const UNLIMITED_TOPIC_LEVELS = 65_536;

/** Whether `topic` has more than `max` levels ('/' separators + 1); stops at the first too many. */
export function tooDeep(topic: string, max: number): boolean {
  let slash = topic.indexOf('/');
  for (let separators = 1; slash >= 0; separators++) {
    if (separators >= max) return true;
    slash = topic.indexOf('/', slash + 1);
  }
  return false;
}

/** The start of a topic for a log line (a deep one is up to 64 KB). */
export function topicForLog(topic: string): string {
  return topic.length > 80 ? `${topic.slice(0, 80)}... (${topic.length} characters)` : topic;
}
