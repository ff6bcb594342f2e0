import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { AccessControl, Authenticator } from './options.ts';

/**
 * Bridges connect to this broker internally and, as in Mosquitto, are not subject to the
 * password file or the ACL. The core has no "internal connection" flag, so each bridge's local
 * session logs in with a random user name and password made at start-up (never written
 * anywhere); the wrappers below admit exactly those and pass everyone else to the configured
 * checks. A client would have to guess 128 random bits to pass as a bridge.
 */
export class BridgeCredentials {
  private readonly users = new Map<string, Uint8Array>();

  issue(name: string): { username: string; password: Uint8Array } {
    const username = `$bridge/${name}/${randomBytes(16).toString('hex')}`;
    const password = new Uint8Array(randomBytes(32));
    this.users.set(username, password);
    return { username, password };
  }

  isBridge(username: string | undefined): boolean {
    return username !== undefined && this.users.has(username);
  }

  /** The broker's checks with the bridges let through. `allowAnonymous` stands in for no authenticator. */
  wrap(
    inner: Authenticator | undefined,
    acl: AccessControl | undefined,
    allowAnonymous: boolean,
  ): { authenticator: Authenticator; accessControl: AccessControl | undefined } {
    const users = this.users;
    const authenticator: Authenticator = {
      authenticate(req) {
        const pw = req.username === undefined ? undefined : users.get(req.username);
        if (pw !== undefined)
          return (
            req.password !== undefined &&
            req.password.length === pw.length &&
            timingSafeEqual(pw, req.password)
          );
        return inner === undefined ? allowAnonymous : inner.authenticate(req);
      },
    };
    // No ACL means every client may do everything: nothing to wrap (and the router's fast path stays).
    const accessControl: AccessControl | undefined =
      acl === undefined
        ? undefined
        : {
            allowed(access, client, topic) {
              if (client.username !== undefined && users.has(client.username)) return true;
              return acl.allowed(access, client, topic);
            },
          };
    return { authenticator, accessControl };
  }
}
