/**
 * Modbus RTU peers for the agent's tests (issue 20): Debian's pymodbus as an RTU server on a socat
 * pty (test/helpers/modbus-server.py: a datastore the test sets and reads, units it can silence or
 * make busy), and a fault-injecting proxy between two ptys that corrupts what the server answers.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { openSerialPort } from '@mqtt-edge/serial-protocol/node';
import type { SerialPortStream } from '@serialport/stream';

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'modbus-server.py');
/** Debian's pymodbus imports only under the system python (the pyenv one first on PATH has none). */
const PYTHON = '/usr/bin/python3';

export const hasPymodbus =
  spawnSync(PYTHON, ['-c', 'import pymodbus.server.async_io, serial_asyncio'], { stdio: 'ignore' }).status ===
  0;

export type Table = 'hr' | 'ir' | 'co' | 'di';

export class PyModbusServer {
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private readonly replies: Array<(line: string) => void> = [];
  private stderr = '';

  private constructor(ttyPath: string, baud: number, parity: 'N' | 'E' | 'O', units: number[]) {
    this.child = spawn(PYTHON, ['-u', SERVER, ttyPath, String(baud), parity, units.join(',')], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-4000);
    });
    createInterface({ input: this.child.stdout! }).on('line', (l) => this.replies.shift()?.(l));
  }

  /**
   * Starts the server on `ttyPath`; resolves once its port is open. A pty carries bytes, not bits:
   * parity and stop bits are not applied to it, and pyserial cannot even set parity on a Linux pty
   * (a second tcsetattr with PARENB there is EINVAL, and pymodbus opens twice), so the server's
   * side says none whatever the agent's says.
   */
  static async start(
    ttyPath: string,
    units: number[],
    baud = 9600,
    parity: 'N' | 'E' | 'O' = 'N',
  ): Promise<PyModbusServer> {
    const s = new PyModbusServer(ttyPath, baud, parity, units);
    const ready = await Promise.race([
      new Promise<string>((resolve) => s.replies.push(resolve)),
      s.exited.then(() => `exited: ${s.stderr}`),
      new Promise<string>((resolve) => setTimeout(() => resolve('no ready line in 10 s'), 10_000).unref()),
    ]);
    if (!ready.includes('"ready"')) {
      s.child.kill('SIGKILL');
      throw new Error(`pymodbus server: ${ready} ${s.stderr}`);
    }
    return s;
  }

  private command(c: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.replies.push((line) => {
        const r = JSON.parse(line) as Record<string, unknown>;
        if (r.error !== undefined) reject(new Error(`pymodbus server: ${String(r.error)}`));
        else resolve(r);
      });
      this.child.stdin!.write(`${JSON.stringify(c)}\n`);
    });
  }

  async set(unit: number, table: Table, address: number, values: Array<number | boolean>): Promise<void> {
    await this.command({ op: 'set', unit, table, address, values });
  }

  async get(unit: number, table: Table, address: number, count = 1): Promise<Array<number | boolean>> {
    return (await this.command({ op: 'get', unit, table, address, count })).values as Array<number | boolean>;
  }

  /** The unit stops answering (as if unplugged), or answers again. */
  async silent(unit: number, on: boolean): Promise<void> {
    await this.command({ op: 'silent', unit, on });
  }

  /** Requests each unit executed. */
  async requests(): Promise<Record<string, number>> {
    return (await this.command({ op: 'requests' })).requests as Record<string, number>;
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Words of a float32, high word first. */
export function float32Words(v: number): [number, number] {
  const b = Buffer.alloc(4);
  b.writeFloatBE(v);
  return [b.readUInt16BE(0), b.readUInt16BE(2)];
}

/**
 * Sits between the agent's pty pair and the server's: everything passes, except that while
 * `corrupt` > 0 each chunk the server sends reaches the agent with one byte flipped (a CRC that
 * cannot match), and `inject` writes bytes of its own toward the agent.
 */
export class PtyFaultProxy {
  /** Chunks still to corrupt. */
  corrupt = 0;
  corrupted = 0;
  private constructor(
    private readonly agentSide: SerialPortStream,
    private readonly serverSide: SerialPortStream,
  ) {
    agentSide.on('data', (b: Buffer) => serverSide.write(b));
    serverSide.on('data', (b: Buffer) => {
      if (this.corrupt > 0) {
        this.corrupt--;
        this.corrupted++;
        const bad = Buffer.from(b);
        bad[bad.length - 1] ^= 0x5a;
        agentSide.write(bad);
        return;
      }
      agentSide.write(b);
    });
    for (const s of [agentSide, serverSide]) s.on('error', () => undefined);
  }

  /** `agentSide`: the far end of the agent's pty pair; `serverSide`: the far end of the server's. */
  static async start(agentSide: string, serverSide: string): Promise<PtyFaultProxy> {
    const [a, s] = await Promise.all([openSerialPort(agentSide), openSerialPort(serverSide)]);
    return new PtyFaultProxy(a, s);
  }

  inject(bytes: Uint8Array): void {
    this.agentSide.write(Buffer.from(bytes));
  }

  async close(): Promise<void> {
    await Promise.all(
      [this.agentSide, this.serverSide].map(
        (p) => new Promise<void>((resolve) => (p.isOpen ? p.close(() => resolve()) : resolve())),
      ),
    );
  }
}
