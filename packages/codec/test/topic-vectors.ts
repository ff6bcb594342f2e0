/**
 * Every example of the topic sections of MQTT 3.1.1 (section 4.7) and MQTT 5.0 (sections 4.7
 * and 4.8.2), as data. Shared by the matchTopic, SubscriptionIndex and TopicStore tests.
 */

export interface MatchVector {
  filter: string;
  topic: string;
  matches: boolean;
  /** Where the example is in the spec. */
  source: string;
}

export const MATCH_VECTORS: MatchVector[] = [
  // 4.7.1.2 Multi-level wildcard
  { filter: 'sport/tennis/player1/#', topic: 'sport/tennis/player1', matches: true, source: '4.7.1.2' },
  {
    filter: 'sport/tennis/player1/#',
    topic: 'sport/tennis/player1/ranking',
    matches: true,
    source: '4.7.1.2',
  },
  {
    filter: 'sport/tennis/player1/#',
    topic: 'sport/tennis/player1/score/wimbledon',
    matches: true,
    source: '4.7.1.2',
  },
  { filter: 'sport/#', topic: 'sport', matches: true, source: '4.7.1.2 (parent level)' },
  { filter: '#', topic: 'sport/tennis/player1', matches: true, source: '4.7.1.2 (# gets every message)' },
  { filter: 'sport/tennis/#', topic: 'sport/tennis/player1', matches: true, source: '4.7.1.2' },
  { filter: 'sport/tennis/#', topic: 'sport/tennis', matches: true, source: '4.7.1.2' },
  { filter: 'sport/tennis/#', topic: 'sport/badminton', matches: false, source: '4.7.1.2' },
  // 4.7.1.3 Single-level wildcard
  { filter: 'sport/tennis/+', topic: 'sport/tennis/player1', matches: true, source: '4.7.1.3' },
  { filter: 'sport/tennis/+', topic: 'sport/tennis/player2', matches: true, source: '4.7.1.3' },
  { filter: 'sport/tennis/+', topic: 'sport/tennis/player1/ranking', matches: false, source: '4.7.1.3' },
  { filter: 'sport/+', topic: 'sport', matches: false, source: '4.7.1.3' },
  { filter: 'sport/+', topic: 'sport/', matches: true, source: '4.7.1.3 (empty level)' },
  { filter: '+/+', topic: '/finance', matches: true, source: '4.7.1.3' },
  { filter: '/+', topic: '/finance', matches: true, source: '4.7.1.3' },
  { filter: '+', topic: '/finance', matches: false, source: '4.7.1.3' },
  { filter: 'sport/+/player1', topic: 'sport/tennis/player1', matches: true, source: '4.7.1.3' },
  { filter: '+/tennis/#', topic: 'sport/tennis/player1/ranking', matches: true, source: '4.7.1.3' },
  { filter: '+/tennis/#', topic: 'sport/tennis', matches: true, source: '4.7.1.3' },
  // 4.7.2 Topics beginning with $
  { filter: '#', topic: '$SYS/monitor/Clients', matches: false, source: '4.7.2' },
  { filter: '+/monitor/Clients', topic: '$SYS/monitor/Clients', matches: false, source: '4.7.2' },
  { filter: '$SYS/#', topic: '$SYS/monitor/Clients', matches: true, source: '4.7.2' },
  { filter: '$SYS/monitor/+', topic: '$SYS/monitor/Clients', matches: true, source: '4.7.2' },
  { filter: '$SYS/#', topic: '$SYS', matches: true, source: '4.7.2 (parent level)' },
  { filter: '+', topic: '$SYS', matches: false, source: '4.7.2' },
  { filter: '#', topic: 'SYS/monitor/Clients', matches: true, source: '4.7.2 (no $: # matches)' },
  { filter: '$SYS/+/Clients', topic: '$SYS/monitor/Clients', matches: true, source: '4.7.2' },
  { filter: '+/#', topic: '$SYS/a', matches: false, source: '4.7.2' },
  { filter: 'a/+', topic: 'a/$b', matches: true, source: '4.7.2 ($ only matters in the first level)' },
  { filter: 'a/#', topic: 'a/$b/c', matches: true, source: '4.7.2 ($ only matters in the first level)' },
  // 4.7.3 Topic semantic and usage
  { filter: 'ACCOUNTS', topic: 'Accounts', matches: false, source: '4.7.3 (case sensitive)' },
  { filter: 'Accounts payable', topic: 'Accounts payable', matches: true, source: '4.7.3 (space)' },
  { filter: '/finance', topic: 'finance', matches: false, source: '4.7.3 (leading / is distinct)' },
  { filter: 'finance', topic: '/finance', matches: false, source: '4.7.3 (leading / is distinct)' },
  { filter: 'finance/', topic: 'finance', matches: false, source: '4.7.3 (trailing / is distinct)' },
  { filter: '/', topic: '/', matches: true, source: '4.7.3 (only /)' },
  { filter: '+/+', topic: '/', matches: true, source: '4.7.1.1 (zero-length levels)' },
  { filter: 'a//b', topic: 'a//b', matches: true, source: '4.7.1.1 (adjacent separators)' },
  { filter: 'a/+/b', topic: 'a//b', matches: true, source: '4.7.1.1 (+ matches the empty level)' },
  { filter: 'a/b', topic: 'a//b', matches: false, source: '4.7.1.1' },
  // 4.8.2 Shared subscriptions (MQTT 5.0): the inner filter decides
  {
    filter: '$share/consumer1/sport/tennis/+',
    topic: 'sport/tennis/player1',
    matches: true,
    source: '4.8.2',
  },
  {
    filter: '$share/consumer2/sport/tennis/+',
    topic: 'sport/tennis/player1',
    matches: true,
    source: '4.8.2',
  },
  { filter: '$share/consumer1//finance', topic: '/finance', matches: true, source: '4.8.2' },
  { filter: '$share/consumer1//finance', topic: 'finance', matches: false, source: '4.8.2' },
  { filter: '$share/consumer1/#', topic: '$SYS/x', matches: false, source: '4.8.2 + 4.7.2' },
  { filter: '$share/g/$SYS/#', topic: '$SYS/x', matches: true, source: '4.8.2 + 4.7.2' },
];

/** Valid topic filters from the spec's examples. */
export const VALID_FILTERS = [
  '#',
  'sport/tennis/#',
  'sport/tennis/player1/#',
  '+',
  '+/tennis/#',
  'sport/+/player1',
  '/+',
  '+/+',
  '/',
  'Accounts payable',
  '$SYS/#',
  '$SYS/monitor/+',
  '$share/consumer1/sport/tennis/+',
  '$share/consumer1//finance',
  '$share/g/#',
  'sport/',
  '//',
];

/** Invalid topic filters from the spec's examples, and the rule each breaks. */
export const INVALID_FILTERS: Array<[string, string]> = [
  ['sport/tennis#', 'hash-placement'],
  ['sport/tennis/#/ranking', 'hash-placement'],
  ['sport+', 'plus-placement'],
  ['', 'empty'],
  ['a\u0000b', 'nul'],
  ['+a', 'plus-placement'],
  ['a/++', 'plus-placement'],
  ['#/', 'hash-placement'],
  ['##', 'hash-placement'],
  ['$share/', 'share-group-empty'],
  ['$share//a', 'share-group-empty'],
  ['$share/g', 'share-filter-missing'],
  ['$share/g/', 'share-filter-missing'],
  ['$share/g+/a', 'share-group-wildcard'],
  ['$share/+/a', 'share-group-wildcard'],
  ['$share/#', 'share-group-wildcard'],
  ['$share/g/a#', 'hash-placement'],
  ['$share/g/a/+b', 'plus-placement'],
];

/** An independent matcher: split into levels and compare them, the way the spec reads. */
export function referenceMatch(filter: string, topic: string): boolean {
  let f = filter;
  if (f.startsWith('$share/')) {
    const slash = f.indexOf('/', 7);
    if (slash < 0) return false;
    f = f.slice(slash + 1);
  }
  const fl = f.split('/');
  const tl = topic.split('/');
  if (topic.startsWith('$') && (fl[0] === '+' || fl[0] === '#')) return false;
  for (let i = 0; i < fl.length; i++) {
    if (fl[i] === '#') return true;
    if (i >= tl.length) return false;
    if (fl[i] !== '+' && fl[i] !== tl[i]) return false;
  }
  return fl.length === tl.length;
}
