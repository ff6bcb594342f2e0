/** Every config group of the differential suite, in the order they run. */
import { acl } from './scenarios/acl.ts';
import { authClosed, authNoFile, authOpen } from './scenarios/auth.ts';
import { bridge } from './scenarios/bridge.ts';
import { delivery } from './scenarios/delivery.ts';
import {
  maxInflight,
  maxKeepalive,
  maxPacketSize,
  maxQueued,
  messageSizeLimit,
  retainUnavailable,
} from './scenarios/limits.ts';
import { retain } from './scenarios/retain.ts';
import { session } from './scenarios/session.ts';
import { sys } from './scenarios/sys.ts';
import { will } from './scenarios/will.ts';
import type { ConfigGroup } from './types.ts';

export const GROUPS: ConfigGroup[] = [
  authClosed,
  authOpen,
  authNoFile,
  acl,
  retain,
  will,
  session,
  delivery,
  messageSizeLimit,
  maxPacketSize,
  maxInflight,
  maxQueued,
  retainUnavailable,
  maxKeepalive,
  bridge,
  sys,
];
