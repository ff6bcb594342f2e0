/**
 * Authentication: a password file written by broker-lite's passwd code ($7$ PBKDF2-SHA512, which
 * Mosquitto 2.0 reads too), anonymous access off and on, and no password file at all.
 */
import { connect, connect5, publish, subscribe } from '../steps.ts';
import type { ConfigGroup, Scenario } from '../types.ts';

const USERS = { alice: 'alice-pw', bob: 'bob-pw', 'empty-pw': '' };

/** One login, over 3.1.1 and over 5.0: two scenarios. */
function login(group: string, name: string, title: string, username?: string, password?: string): Scenario[] {
  return [
    { id: `${group}.${name}-v311`, title: `${title} (3.1.1)`, steps: [connect('c', { username, password })] },
    { id: `${group}.${name}-v5`, title: `${title} (5.0)`, steps: [connect5('c', { username, password })] },
  ];
}

export const authClosed: ConfigGroup = {
  name: 'auth-closed',
  conf: 'allow_anonymous false\npassword_file {dir}/passwd',
  passwords: USERS,
  scenarios: [
    ...login('auth-closed', 'good-password', 'a user with the right password gets in', 'alice', 'alice-pw'),
    ...login('auth-closed', 'bad-password', 'a wrong password is refused', 'alice', 'wrong'),
    ...login('auth-closed', 'unknown-user', 'a user not in the file is refused', 'mallory', 'x'),
    ...login('auth-closed', 'anonymous', 'no user name while anonymous access is off', undefined, undefined),
    ...login('auth-closed', 'no-password', 'a known user without a password is refused', 'bob', undefined),
    ...login('auth-closed', 'empty-password', "a user whose password is '' sends ''", 'empty-pw', ''),
    {
      id: 'auth-closed.case-sensitive',
      title: 'user names and passwords are case-sensitive',
      steps: [
        connect('a', { username: 'Alice', password: 'alice-pw' }),
        connect('b', { username: 'alice', password: 'ALICE-PW' }),
      ],
    },
    {
      id: 'auth-closed.authenticated-traffic',
      title: 'two users exchange messages (no ACL file: every topic)',
      steps: [
        connect5('a', { username: 'alice', password: 'alice-pw' }),
        connect('b', { username: 'bob', password: 'bob-pw' }),
        subscribe('b', '#'),
        publish('a', 'any/topic', 'hi', { qos: 1 }),
      ],
    },
  ],
};

export const authOpen: ConfigGroup = {
  name: 'auth-open',
  conf: 'allow_anonymous true\npassword_file {dir}/passwd',
  passwords: USERS,
  scenarios: [
    ...login('auth-open', 'anonymous', 'no user name while anonymous access is on', undefined, undefined),
    ...login(
      'auth-open',
      'bad-password',
      'a wrong password is refused even with anonymous access on',
      'bob',
      'x',
    ),
    ...login(
      'auth-open',
      'unknown-user',
      'an unknown user is refused even with anonymous access on',
      'zed',
      'x',
    ),
    {
      id: 'auth-open.good-password-v311',
      title: 'a user with the right password gets in (3.1.1)',
      steps: [connect('c', { username: 'bob', password: 'bob-pw' })],
    },
  ],
};

export const authNoFile: ConfigGroup = {
  name: 'auth-nofile',
  conf: 'allow_anonymous false',
  scenarios: [
    ...login(
      'auth-nofile',
      'any-user',
      'a user name while anonymous access is off and no password file',
      'who',
      'x',
    ),
    ...login(
      'auth-nofile',
      'anonymous',
      'no user name, anonymous access off, no password file',
      undefined,
      undefined,
    ),
  ],
};
