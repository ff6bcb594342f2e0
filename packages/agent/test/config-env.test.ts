// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${VAR} references are what these strings test.
/** Issue 20.4: `${VAR}` environment references in the agent's config. */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, parseConfigText } from '../src/config.ts';

const minimal = { serial: [{ path: '/dev/ttyUSB0' }], mqtt: { url: 'mqtt://127.0.0.1:1883' } };

function problems(raw: unknown, env: NodeJS.ProcessEnv = {}): Array<{ path: string; message: string }> {
  try {
    parseConfig(raw, { env, baseDir: '/etc/agent' });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  return [];
}

describe('issue 20.4: ${VAR} environment references', () => {
  const yamlText = [
    'serial:',
    '  - path: ${SERIAL_PATH}',
    '    baud: ${BAUD:-9600}',
    'mqtt:',
    '  url: mqtt://${BROKER_HOST}:${BROKER_PORT:-1883}',
    '  password: ${SECRET}',
    'topics:',
    '  prefix: ${PREFIX:-plant/a}',
    '',
  ].join('\n');

  it('issue 20.4: references in values are replaced from the environment; a value that is one reference and reads as a number is that number', () => {
    const c = parseConfigText(yamlText, {
      env: { SERIAL_PATH: '/dev/ttyUSB7', BROKER_HOST: 'broker.lan', SECRET: 'p#ss: "x" ${NOT}' },
      baseDir: '/etc/agent',
    });
    expect(c.serial[0].path).toBe('/dev/ttyUSB7');
    expect(c.serial[0].baud).toBe(9600);
    expect(c.mqtt.url).toBe('mqtt://broker.lan:1883');
    // A value from the environment is text, never YAML: quotes, colons, # and ${...} in it stay as they are.
    expect(c.mqtt.password).toBe('p#ss: "x" ${NOT}');
    expect(c.topics.prefix).toBe('plant/a');
    const set = parseConfigText(yamlText, {
      env: {
        SERIAL_PATH: 'tty',
        BROKER_HOST: 'h',
        BROKER_PORT: '8883',
        BAUD: '19200',
        SECRET: '',
        PREFIX: 'p',
      },
      baseDir: '/etc/agent',
    });
    expect(set.serial[0]).toMatchObject({ path: '/etc/agent/tty', baud: 19200 });
    expect(set.mqtt.url).toBe('mqtt://h:8883');
    expect(set.topics.prefix).toBe('p');
    // JSON configs take them too.
    const json = parseConfigText(JSON.stringify({ serial: [{ path: '${P}' }], mqtt: { url: '${U}' } }), {
      env: { P: '/dev/x', U: 'mqtt://127.0.0.1' },
    });
    expect([json.serial[0].path, json.mqtt.url]).toEqual(['/dev/x', 'mqtt://127.0.0.1']);
  });

  it('issue 20.4: an unset variable is an error naming the key, the variable and its line; ${VAR:-default} is the way out', () => {
    let err: ConfigError | undefined;
    try {
      parseConfigText(yamlText, { env: { BROKER_HOST: 'h' }, source: 'agent.yaml' });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.lines).toEqual([
      'serial[0].path (line 2): environment variable SERIAL_PATH is not set (write ${SERIAL_PATH:-default} for a default)',
      'mqtt.password (line 6): environment variable SECRET is not set (write ${SECRET:-default} for a default)',
    ]);
  });

  it('issue 20.4: $${ is a literal ${; a malformed reference is an error, a lone $ is text', () => {
    const c = parseConfig(
      { serial: [{ path: '/dev/$${X}' }], mqtt: { url: 'mqtt://127.0.0.1', password: 'a$b$' } },
      { env: {} },
    );
    expect(c.serial[0].path).toBe('/dev/${X}');
    expect(c.mqtt.password).toBe('a$b$');
    expect(problems({ ...minimal, topics: { prefix: '${1BAD}' } })).toEqual([
      {
        path: 'topics.prefix',
        message:
          'malformed reference ${1BAD}: write ${NAME} or ${NAME:-default} (NAME: letters, digits, _), or $${ for a literal ${',
      },
    ]);
    expect(problems({ ...minimal, topics: { prefix: 'a${B' } })[0].message).toMatch(/malformed reference/);
  });
});
