/**
 * Small JavaScript engines for the ES5 tests and the engines benchmark: Debian's Duktape (`duk`,
 * a child process) and QuickJS (quickjs-emscripten, in process), behind one interface.
 *
 * A script talks back with `print('@@' + text)`; a command line ends with `print('@@END')` (the
 * harness's `H.run` does both), so a caller knows when its answer is complete. Duktape runs
 * under ES5_STRICT_PRELUDE: every built-in ES5.1 and typed arrays lack is deleted first (Duktape
 * 2.7 has some of ES2015: Object.assign, Math.imul, Symbol, ...), so a use of one fails there.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getQuickJS } from 'quickjs-emscripten';

function onPath(bin: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Debian's `duk` (package duktape), or null. */
export const DUK = onPath('duk');
export const DUK_MISSING = 'duk (Debian package duktape) is not installed: the Duktape runs are skipped';

/**
 * Deletes what ES5.1 (ECMA-262 5.1 section 15) plus the Khronos typed arrays do not define, from
 * the global object and the built-ins the codec and the client core could reach. After it, the
 * engine offers what an ES5.1 engine (JerryScript's ES5.1 profile, old Espruino) would.
 */
export const ES5_STRICT_PRELUDE = `(function (G) {
  function keep(obj, names) {
    if (!obj) return;
    var own = Object.getOwnPropertyNames(obj);
    for (var i = 0; i < own.length; i++) {
      if (names.indexOf(own[i]) < 0) {
        try { delete obj[own[i]]; } catch (e) {}
        if (!Object.prototype.hasOwnProperty.call(obj, own[i])) continue;
        // ES2015's numeric constants (Number.EPSILON, ...) are not configurable: left in place
        // (scripts/es5-check.ts refuses them in the sources); a function must go
        var d = Object.getOwnPropertyDescriptor(obj, own[i]);
        if (d.writable) obj[own[i]] = undefined;
        else if (typeof d.value === 'function' || d.get) throw new Error('cannot delete ' + own[i]);
      }
    }
  }
  var TYPED = ['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array',
    'Uint32Array', 'Float32Array', 'Float64Array'];
  keep(G, ['NaN', 'Infinity', 'undefined', 'eval', 'parseInt', 'parseFloat', 'isNaN', 'isFinite', 'decodeURI',
    'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape', 'unescape', 'Object', 'Function', 'Array',
    'String', 'Boolean', 'Number', 'Date', 'RegExp', 'Error', 'EvalError', 'RangeError', 'ReferenceError',
    'SyntaxError', 'TypeError', 'URIError', 'Math', 'JSON', 'ArrayBuffer', 'DataView', 'print']
    .concat(TYPED));
  keep(Object, ['length', 'name', 'prototype', 'getPrototypeOf', 'getOwnPropertyDescriptor', 'getOwnPropertyNames',
    'create', 'defineProperty', 'defineProperties', 'seal', 'freeze', 'preventExtensions', 'isSealed', 'isFrozen',
    'isExtensible', 'keys']);
  keep(Object.prototype, ['constructor', 'toString', 'toLocaleString', 'valueOf', 'hasOwnProperty',
    'isPrototypeOf', 'propertyIsEnumerable']);
  keep(Function.prototype, ['constructor', 'toString', 'apply', 'call', 'bind', 'length', 'name']);
  keep(Array, ['length', 'name', 'prototype', 'isArray']);
  keep(Array.prototype, ['length', 'constructor', 'toString', 'toLocaleString', 'concat', 'join', 'pop', 'push',
    'reverse', 'shift', 'slice', 'sort', 'splice', 'unshift', 'indexOf', 'lastIndexOf', 'every', 'some', 'forEach',
    'map', 'filter', 'reduce', 'reduceRight']);
  keep(String, ['length', 'name', 'prototype', 'fromCharCode']);
  keep(String.prototype, ['length', 'constructor', 'toString', 'valueOf', 'charAt', 'charCodeAt', 'concat',
    'indexOf', 'lastIndexOf', 'localeCompare', 'match', 'replace', 'search', 'slice', 'split', 'substring',
    'substr', 'toLowerCase', 'toLocaleLowerCase', 'toUpperCase', 'toLocaleUpperCase', 'trim']);
  keep(Number, ['length', 'name', 'prototype', 'MAX_VALUE', 'MIN_VALUE', 'NaN', 'NEGATIVE_INFINITY',
    'POSITIVE_INFINITY']);
  keep(Number.prototype, ['constructor', 'toString', 'toLocaleString', 'valueOf', 'toFixed', 'toExponential',
    'toPrecision']);
  keep(Math, ['E', 'LN10', 'LN2', 'LOG2E', 'LOG10E', 'PI', 'SQRT1_2', 'SQRT2', 'abs', 'acos', 'asin', 'atan',
    'atan2', 'ceil', 'cos', 'exp', 'floor', 'log', 'max', 'min', 'pow', 'random', 'round', 'sin', 'sqrt', 'tan']);
  keep(JSON, ['parse', 'stringify']);
  keep(ArrayBuffer, ['length', 'name', 'prototype']);
  keep(ArrayBuffer.prototype, ['constructor', 'byteLength', 'slice']);
  var TA_PROTO = ['constructor', 'BYTES_PER_ELEMENT', 'buffer', 'byteLength', 'byteOffset', 'length', 'set',
    'subarray'];
  for (var t = 0; t < TYPED.length; t++) {
    var C = G[TYPED[t]];
    keep(C, ['length', 'name', 'prototype', 'BYTES_PER_ELEMENT']);
    for (var p = C.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) keep(p, TA_PROTO);
  }
})(this);
`;

/** What the scripts print through: lines starting with `@@`, in order. */
export interface Engine {
  readonly name: string;
  /** Evaluates one line (a call of the harness) and returns what it printed up to `@@END`. */
  run(line: string): Promise<string[]>;
  close(): void;
}

/**
 * Duktape in interactive mode (`duk -i FILES`): it loads the files, then evaluates each line it
 * reads on stdin, which is how a test talks to a session running inside it.
 */
export async function startDuk(scripts: Array<{ name: string; code: string }>): Promise<Engine> {
  if (DUK === null) throw new Error(DUK_MISSING);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-edge-duk-'));
  const files = [{ name: 'es5-strict-prelude.js', code: ES5_STRICT_PRELUDE }, ...scripts].map((s) => {
    const f = path.join(dir, s.name);
    writeFileSync(f, s.code);
    return f;
  });
  const child: ChildProcess = spawn(DUK, ['-i', ...files], { stdio: ['pipe', 'pipe', 'pipe'] });
  let buffered = '';
  let stderr = '';
  let waiting: { lines: string[]; resolve: (l: string[]) => void; reject: (e: Error) => void } | null = null;
  let exited: Error | null = null;
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr += d;
  });
  child.stdout?.on('data', (d: string) => {
    buffered += d;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const at = line.indexOf('@@');
      if (at < 0) {
        // duk prints an uncaught error of a file it loads on stdout; a line of the REPL too
        if (/Error/.test(line) && waiting === null) stderr += `${line}\n`;
        continue;
      }
      const text = line.slice(at + 2);
      if (waiting === null) continue;
      if (text === 'END') {
        const w = waiting;
        waiting = null;
        w.resolve(w.lines);
      } else waiting.lines.push(text);
    }
  });
  child.on('exit', (code) => {
    exited = new Error(`duk exited (${code}): ${stderr.trim()}`);
    if (waiting !== null) waiting.reject(exited);
    rmSync(dir, { recursive: true, force: true });
  });
  const engine: Engine = {
    name: 'duktape',
    run(line: string) {
      if (exited !== null) return Promise.reject(exited);
      return new Promise((resolve, reject) => {
        waiting = { lines: [], resolve, reject };
        child.stdin?.write(`${line.replace(/\n/g, ' ')}\n`);
      });
    },
    close() {
      child.stdin?.end();
      child.kill();
    },
  };
  // Loading errors surface here: a probe line answers only if every file loaded.
  const probe = await engine.run("print('@@' + typeof H); print('@@END')");
  if (probe[0] !== 'object') {
    engine.close();
    throw new Error(`the scripts did not load in duk: ${stderr.trim() || probe.join(' ')}`);
  }
  return engine;
}

/** QuickJS in this process: the same scripts, `print` bound to the same protocol. */
export async function startQuickJS(
  scripts: Array<{ name: string; code: string }>,
  memoryLimit = 64 * 1024 * 1024,
): Promise<Engine> {
  const QuickJS = await getQuickJS();
  const runtime = QuickJS.newRuntime();
  runtime.setMemoryLimit(memoryLimit);
  const vm = runtime.newContext();
  let printed: string[] = [];
  const print = vm.newFunction('print', (h) => {
    printed.push(vm.getString(h));
  });
  vm.setProp(vm.global, 'print', print);
  print.dispose();
  const evalOrThrow = (code: string, name: string) => {
    const r = vm.evalCode(code, name);
    if (r.error) {
      const e = vm.dump(r.error);
      r.error.dispose();
      throw new Error(`${name} in QuickJS: ${JSON.stringify(e)}`);
    }
    r.value.dispose();
  };
  for (const s of scripts) evalOrThrow(s.code, s.name);
  return {
    name: 'quickjs',
    async run(line: string) {
      printed = [];
      evalOrThrow(line, 'command');
      const out: string[] = [];
      for (const p of printed) {
        if (!p.startsWith('@@')) continue;
        if (p === '@@END') return out;
        out.push(p.slice(2));
      }
      throw new Error(`no @@END from QuickJS after ${line.slice(0, 80)}`);
    },
    close() {
      vm.dispose();
      runtime.dispose();
    },
  };
}
