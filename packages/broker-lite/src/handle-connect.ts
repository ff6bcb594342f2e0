/**
 * CONNECT: client identifier rules, authentication (delayed refusals), session takeover,
 * clean start / session resumption, MQTT 5 limits both ways, CONNACK.
 */
import {
  type ConnackPacket,
  type ConnectPacket,
  ConnectReturnCode,
  MAX_PACKET_SIZE,
  type Properties,
  ReasonCode,
} from '@mqtt-edge/codec';
import { ConnState } from './conn-state.ts';
import type { Connection } from './connection.ts';
import { pump, resendInflight } from './deliver.ts';
import { HashQueueFullError } from './login-queue.ts';
import { TOPIC_ALIAS_MAXIMUM } from './options.ts';
import { NEVER_EXPIRES } from './session.ts';
import { OUT_ALIAS_LIMIT, OutAliases } from './topic-alias.ts';

/** Client ids that make a valid one-level topic prefix (what `%c` ACL patterns match too). */
const RESPONSE_SAFE = /^[^/+#\u0000]+$/;

export function handleConnect(conn: Connection, p: ConnectPacket): void {
  const b = conn.broker;
  const v5 = p.protocolVersion === 5;
  conn.state = ConnState.Authenticating;
  if (p.will?.retain === true && !b.options.retainAvailable) {
    // As Mosquitto, before authentication: 5.0 gets 0x9A; 3.1.1 has no return code for it and
    // is closed without a CONNACK.
    b.log('notice', 'client refused: will with retain while retain_available is false', {
      clientId: p.clientId,
      remote: conn.remote,
    });
    refuse(conn, 0, ReasonCode.RetainNotSupported, 'retained messages are not available');
    return;
  }
  let clientId = p.clientId;
  let assigned = false;
  if (clientId === '') {
    if (v5 || (p.protocolVersion === 4 && p.clean)) {
      clientId = b.assignClientId();
      assigned = true;
    } else {
      refuse(
        conn,
        ConnectReturnCode.IdentifierRejected,
        ReasonCode.ClientIdentifierNotValid,
        'empty client id',
      );
      return;
    }
  }
  const props = p.properties;
  if (props !== undefined) {
    if (props.authenticationMethod !== undefined) {
      refuse(conn, 0, ReasonCode.BadAuthenticationMethod, 'enhanced authentication is not supported');
      return;
    }
    if (props.requestProblemInformation === false) conn.problemInfo = false;
  }
  // Mosquitto's order: the certificate names the user (where the listener says so), then
  // use_username_as_clientid, then the password check, all before the session is touched.
  const listener = conn.listener;
  let username = p.username;
  const certificateUser = listener.useIdentityAsUsername
    ? conn.certificateCommonName
    : listener.useSubjectAsUsername === true
      ? conn.certificateSubject
      : null;
  if (certificateUser === undefined && !conn.internal) {
    // The listener takes the user from the certificate and this one names none (no CN).
    conn.clientId = clientId;
    refuseLater(conn, 'client refused: the certificate names no user', { clientId }, LOGIN_FAILED);
    return;
  }
  if (certificateUser !== null && certificateUser !== undefined) username = certificateUser;
  conn.username = username;
  if (listener.useUsernameAsClientid === true && !conn.internal) {
    if (username === undefined) {
      b.log('notice', 'client refused: use_username_as_clientid and no user name', {
        clientId,
        remote: conn.remote,
      });
      refuse(conn, ConnectReturnCode.NotAuthorized, ReasonCode.NotAuthorized, 'a user name is required');
      return;
    }
    clientId = username;
  }
  conn.clientId = clientId;
  if (conn.internal) {
    accept(conn, p, clientId, assigned);
    return;
  }

  const decide = (ok: boolean): void => {
    if (conn.ending) return;
    if (!ok) {
      refuseLater(conn, 'client refused: bad user name or password', { clientId, username }, NOT_AUTHORIZED);
      return;
    }
    accept(conn, p, clientId, assigned);
  };

  // A certificate that names the user is the whole login (Mosquitto does not ask the password file).
  if (certificateUser !== null) {
    accept(conn, p, clientId, assigned);
    return;
  }
  // per_listener_settings: the listener's rules; otherwise the broker's.
  const sec = listener.security;
  const allowAnonymous = sec !== undefined ? sec.allowAnonymous : b.options.allowAnonymous;
  if (username === undefined) {
    if (!allowAnonymous) {
      b.log('notice', 'client refused: anonymous access is off', { clientId, remote: conn.remote });
      refuse(conn, ConnectReturnCode.NotAuthorized, ReasonCode.NotAuthorized, 'anonymous access is off');
      return;
    }
    accept(conn, p, clientId, assigned);
    return;
  }
  const auth = sec !== undefined ? sec.authenticator : b.authenticator;
  if (auth === undefined) {
    // No password file: Mosquitto admits a user name only where anonymous clients are admitted.
    if (!allowAnonymous) {
      refuse(conn, ConnectReturnCode.NotAuthorized, ReasonCode.NotAuthorized, 'no password file');
      return;
    }
    accept(conn, p, clientId, assigned);
    return;
  }
  let result: boolean | Promise<boolean>;
  const gone = new AbortController();
  try {
    result = auth.authenticate({
      clientId,
      username,
      password: p.password,
      certificateCommonName: conn.certificateCommonName,
      remoteAddress: addressOf(conn.remote),
      signal: gone.signal,
    });
  } catch {
    result = false;
  }
  if (typeof result === 'boolean') decide(result);
  else {
    conn.socket.pause();
    // A client that hangs up while its password waits to be checked costs no hash.
    const onClose = (): void => gone.abort();
    conn.socket.once('close', onClose);
    result.then(
      (ok) => {
        conn.socket.off('close', onClose);
        if (!conn.ending) conn.socket.resume();
        decide(ok === true);
      },
      (err: unknown) => {
        conn.socket.off('close', onClose);
        if (!(err instanceof HashQueueFullError)) decide(false);
        else if (!conn.ending) {
          // Not "bad password": a real user's client must retry, not give up on its credentials.
          const code = err.scope === 'source' ? ReasonCode.ConnectionRateExceeded : ReasonCode.ServerBusy;
          refuseLater(conn, 'client refused: too many logins waiting', { clientId, username }, [
            ConnectReturnCode.ServerUnavailable,
            code,
            err.message,
          ]);
        }
      },
    );
  }
}

type Refusal = [code3: number, code5: number, reason: string];
/**
 * A user name and password the password file refuses (or, without a file, any user name while
 * anonymous access is off): Mosquitto 2.0 answers "not authorized" (5 / 0x87), not "bad user
 * name or password"; clients and scripts written against it test for that (issue 15).
 */
const NOT_AUTHORIZED: Refusal = [
  ConnectReturnCode.NotAuthorized,
  ReasonCode.NotAuthorized,
  'bad credentials',
];
/** A listener that takes the user from the certificate, and the certificate names none. */
const LOGIN_FAILED: Refusal = [
  ConnectReturnCode.BadUserNameOrPassword,
  ReasonCode.BadUserNameOrPassword,
  'bad credentials',
];

/** A refused login: counted, logged, answered after the failure delay (slows guessing). */
function refuseLater(conn: Connection, message: string, fields: Record<string, unknown>, why: Refusal): void {
  const b = conn.broker;
  b.counters.authFailures++;
  b.log('notice', message, { ...fields, remote: conn.remote });
  conn.socket.pause();
  const timer = setTimeout(() => refuse(conn, ...why), b.authFailureDelayMs);
  timer.unref();
}

/** `address:port` (IPv6 unbracketed) -> the address. */
function addressOf(remote: string): string {
  const colon = remote.lastIndexOf(':');
  return colon < 0 ? remote : remote.slice(0, colon);
}

/** CONNACK with a refusal, then close. */
function refuse(conn: Connection, code3: number, code5: number, reason: string): void {
  if (conn.ending) return;
  const v5 = conn.version === 5;
  const ack: ConnackPacket = { type: 'connack', sessionPresent: false, reasonCode: v5 ? code5 : code3 };
  if (v5 && conn.problemInfo) ack.properties = { reasonString: reason };
  if (v5 || code3 !== 0) conn.sendPacket(ack);
  conn.close();
}

function accept(conn: Connection, p: ConnectPacket, clientId: string, assigned: boolean): void {
  const b = conn.broker;
  if (conn.ending) return;
  const v5 = p.protocolVersion === 5;
  const props = p.properties;

  // Takeover: the connection holding this client id goes first (its will is handled as a drop).
  const existing = b.sessions.get(clientId);
  if (!conn.internal && (existing?.internal === true || b.isReservedClientId(clientId))) {
    b.log('notice', 'client refused: the client id belongs to an internal session (a bridge)', {
      clientId,
      remote: conn.remote,
    });
    refuse(
      conn,
      ConnectReturnCode.IdentifierRejected,
      ReasonCode.ClientIdentifierNotValid,
      'client id in use by the broker',
    );
    return;
  }
  if (existing !== undefined && existing.conn !== null && existing.conn !== conn) {
    const old = existing.conn;
    b.log('notice', 'client id taken over, closing the old connection', { clientId, remote: conn.remote });
    b.detach(old, true);
    old.fail(ReasonCode.SessionTakenOver, 'another connection took this client id');
  }

  let session = b.sessions.get(clientId);
  let sessionPresent = false;
  if (session !== undefined && p.clean) {
    b.endSession(session);
    session = undefined;
  }
  if (session !== undefined) {
    sessionPresent = true;
    b.wills.cancel(clientId);
  } else {
    b.wills.fire(clientId);
    session = b.createSession(clientId);
  }
  const expiry = v5 ? (props?.sessionExpiryInterval ?? 0) : p.clean ? 0 : NEVER_EXPIRES;
  const wasPersistent = session.persistent;
  session.expiryInterval = expiry;
  session.expiresAt = 0;
  session.username = conn.username;
  session.security = conn.listener.security ?? null;
  session.internal = conn.internal;
  session.bridge = p.bridge === true;
  session.conn = conn;
  conn.session = session;

  // Keepalive, with the server keepalive of MQTT 5 where the client asked for too much. As in
  // Mosquitto, max_keepalive applies to MQTT 5 clients only: a 3.1.1 client cannot be told.
  let keepalive = p.keepalive;
  let serverKeepAlive: number | undefined;
  const maxKeepalive = b.options.maxKeepalive;
  if (v5 && maxKeepalive > 0 && (keepalive > maxKeepalive || (keepalive === 0 && maxKeepalive < 65_535))) {
    keepalive = maxKeepalive;
    serverKeepAlive = keepalive;
  }
  conn.keepaliveMs = keepalive * 1000;
  if (props !== undefined) {
    if (props.receiveMaximum !== undefined) conn.receiveMax = props.receiveMaximum;
    if (props.maximumPacketSize !== undefined) conn.maxOut = props.maximumPacketSize;
    // Outbound topic aliases where the client allows them; an internal peer has no wire to save.
    const allowed = props.topicAliasMaximum ?? 0;
    const mine = b.options.maxTopicAliasOut ?? OUT_ALIAS_LIMIT;
    if (allowed > 0 && mine > 0 && !conn.internal) conn.outAliases = new OutAliases(Math.min(allowed, mine));
  }
  if (p.will !== undefined) {
    const w = p.will;
    conn.will = { ...w, payload: w.payload.slice() };
  }

  if (b.persist !== null) {
    if (session.persistent) b.persist.sessionPut(session);
    else if (wasPersistent || session.stored) b.persist.sessionDel(session);
  }

  const ack: ConnackPacket = { type: 'connack', sessionPresent, reasonCode: 0 };
  if (v5) {
    // Receive Maximum always said out loud, 65,535 included: a client need not know the default.
    const ap: Properties = {
      topicAliasMaximum: TOPIC_ALIAS_MAXIMUM,
      receiveMaximum: b.receiveMaximum,
    };
    if (assigned) ap.assignedClientIdentifier = clientId;
    // The spec's MAY (3.1.2.11.6): a topic prefix for the responses this client asks for, one
    // per client id, which an ACL makes the client's own with `pattern readwrite response/%c/#`.
    if (props?.requestResponseInformation === true && RESPONSE_SAFE.test(clientId))
      ap.responseInformation = `response/${clientId}/`;
    if (serverKeepAlive !== undefined) ap.serverKeepAlive = serverKeepAlive;
    if (!b.options.retainAvailable) ap.retainAvailable = false;
    if (b.maxPacketIn < MAX_PACKET_SIZE) ap.maximumPacketSize = b.maxPacketIn;
    ack.properties = ap;
  }
  conn.sendPacket(ack);
  conn.connected();
  b.counters.connects++;
  // A notice, as Mosquitto's "New client connected" ($SYS/broker/log/N under log_dest topic).
  if (b.options.connectionMessages !== false)
    b.log('notice', 'client connected', {
      clientId,
      username: conn.username,
      protocol: p.protocolVersion,
      bridge: p.bridge,
      clean: p.clean,
      keepalive,
      remote: conn.remote,
    });
  if (session.inflightCount > 0) resendInflight(b, session);
  pump(b, session);
  conn.replayEarly();
}
