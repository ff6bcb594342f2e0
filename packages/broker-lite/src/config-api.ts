/** The configuration layer's public API, re-exported from the package index. */
export { AclFile, type AclRuleSet, parseAcl } from './acl.ts';
export {
  type BrokerConfig,
  type ConfigOverrides,
  defaultConfig,
  type ListenerConfig,
  loadConfig,
  parseConfig,
} from './config.ts';
export { buildBrokerOptions, describeConfig, loadSecurity, type Security } from './config-build.ts';
export { ConfigError, type ConfigWarning, formatWarning } from './config-error.ts';
export { createLogger, type Logger, type LoggerOptions, type LogType } from './log.ts';
export {
  createAuthenticator,
  HashQueueFullError,
  hashPassword,
  PasswordFile,
  type PasswordHash,
  parsePasswordFile,
  verifyHash,
} from './passwd.ts';
