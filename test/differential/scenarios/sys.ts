/** `$SYS`: which topics a broker publishes (names, not values), with sys_interval 1. */
import { connect, publish, subscribe, sysTopics } from '../steps.ts';
import type { ConfigGroup } from '../types.ts';

export const sys: ConfigGroup = {
  name: 'sys',
  conf: 'allow_anonymous true\nsys_interval 1',
  freshPerScenario: true,
  scenarios: [
    {
      id: 'sys.topics',
      title: 'the $SYS topics a subscriber finds, after some traffic',
      steps: [
        connect('a'),
        subscribe('a', { filter: 't/#', qos: 1 }),
        connect('b'),
        publish('b', 't/x', 'x', { qos: 1, retain: true }),
        sysTopics('a'),
      ],
    },
  ],
};
