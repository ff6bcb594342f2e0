/**
 * The guard of issue 21: the sources of the ES5 builds (the codec's packet and topic modules,
 * the client core) may use at run time only what ES5.1 and typed arrays give. TypeScript's
 * checker resolves every name and property they read: one declared by a lib newer than
 * lib.es5.d.ts (Map, Promise, Object.assign, Math.imul, String.prototype.startsWith, ...), by a
 * runtime's types (Buffer, process, console), or a typed-array member beyond the Khronos
 * interface (fill, slice, indexOf, ...) is refused, and so is syntax whose ES5 form needs a
 * run-time feature: for-of or spread over anything but an array (an iterator: Symbol), async
 * functions (Promise), generators, BigInt, regular expression flags past ES5.
 *
 * Allowed: the operand of `typeof` (feature detection), and a line that says
 * `es5-check: feature-detected` (or the line before it does) for code behind a detection.
 *
 *   npx tsx scripts/es5-check.ts      (exit 1 and a list when something is refused)
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MARKER = 'es5-check: feature-detected';

/** What ES5 engines with typed arrays (the Khronos specification) give on a typed array. */
const TYPED_ARRAY_MEMBERS = new Set([
  'BYTES_PER_ELEMENT',
  'buffer',
  'byteLength',
  'byteOffset',
  'length',
  'set',
  'subarray',
  'constructor',
]);
const TYPED_ARRAYS = new Set([
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
]);
/** Typed-array constructors' statics of ES2015 (declared in lib.es5.d.ts by TypeScript). */
const TYPED_ARRAY_STATICS = new Set(['from', 'of']);

export interface Es5Violation {
  file: string;
  line: number;
  text: string;
  why: string;
}

function isLibFile(f: string): boolean {
  return /[/\\]typescript[/\\]lib[/\\]lib\.[^/\\]+\.d\.ts$/.test(f);
}

function isEs5Lib(f: string): boolean {
  return /[/\\]lib\.es5\.d\.ts$/.test(f);
}

function compilerOptions(): ts.CompilerOptions {
  const configPath = path.join(ROOT, 'tsconfig.json');
  const config = ts.readConfigFile(configPath, ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
  return { ...parsed.options, noEmit: true };
}

/** The violations in `files` (absolute paths of TypeScript sources). */
export function checkEs5(files: string[], options: ts.CompilerOptions = compilerOptions()): Es5Violation[] {
  const program = ts.createProgram(files, options);
  const checker = program.getTypeChecker();
  const out: Es5Violation[] = [];

  for (const file of files) {
    const sf = program.getSourceFile(file);
    if (sf === undefined) throw new Error(`not in the program: ${file}`);
    const lines = sf.text.split('\n');
    const report = (node: ts.Node, why: string) => {
      const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
      if (lines[line]?.includes(MARKER) || (line > 0 && lines[line - 1].includes(MARKER))) return;
      out.push({ file: path.relative(ROOT, file), line: line + 1, text: node.getText(sf).slice(0, 60), why });
    };

    const isArrayLike = (node: ts.Expression) => {
      const type = checker.getTypeAtLocation(node);
      const name = type.getSymbol()?.getName() ?? '';
      const parts = type.isUnion() ? type.types : [type];
      return parts.every(
        (t) =>
          checker.isArrayType(t) ||
          checker.isTupleType(t) ||
          TYPED_ARRAYS.has(t.getSymbol()?.getName() ?? name),
      );
    };

    /** Where a name or property comes from, when it is a run time's and not ES5's. */
    const checkSymbol = (node: ts.Identifier | ts.PrivateIdentifier, owner: ts.Expression | null) => {
      let symbol = checker.getSymbolAtLocation(node);
      if (symbol === undefined) return;
      if (symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
      // The value's own declaration: `Symbol` and `Promise` have an interface in lib.es5.d.ts
      // but their values are ES2015's
      const decls =
        symbol.valueDeclaration !== undefined ? [symbol.valueDeclaration] : (symbol.declarations ?? []);
      if (decls.length === 0) return;
      const files = decls.map((d) => d.getSourceFile().fileName);
      if (files.some((f) => !f.includes('node_modules') && !isLibFile(f))) return; // ours
      if (!files.some(isEs5Lib)) {
        const from = files.find(isLibFile);
        report(node, from ? `${path.basename(from)}, not ES5.1` : 'a runtime API, not ECMAScript');
        return;
      }
      // Declared in lib.es5.d.ts, but TypeScript puts ES2015's typed-array members there too
      const container = decls[0].parent;
      const containerName =
        container !== undefined && (ts.isInterfaceDeclaration(container) || ts.isClassDeclaration(container))
          ? (container.name?.text ?? '')
          : '';
      const member = node.text;
      if (TYPED_ARRAYS.has(containerName) && !TYPED_ARRAY_MEMBERS.has(member))
        report(node, `${containerName}.prototype.${member} is ES2015, not a typed array of ES5`);
      else if (containerName.endsWith('ArrayConstructor') && TYPED_ARRAY_STATICS.has(member))
        report(node, `${containerName.replace('Constructor', '')}.${member} is ES2015`);
      else if (containerName === 'ArrayBufferConstructor' && member === 'isView')
        report(node, 'ArrayBuffer.isView is ES2015');
      else if (owner === null && containerName === '' && member === 'globalThis') report(node, 'ES2020');
    };

    const visit = (node: ts.Node): void => {
      // types, and names only declared, are not run time
      if (ts.isTypeNode(node) && !ts.isExpressionWithTypeArguments(node)) return;
      if (
        ts.isInterfaceDeclaration(node) ||
        ts.isTypeAliasDeclaration(node) ||
        ts.isImportDeclaration(node) ||
        ts.isExportDeclaration(node)
      )
        return;
      if (ts.isTypeOfExpression(node)) return; // feature detection
      if (ts.isPropertyAccessExpression(node)) {
        visit(node.expression);
        checkSymbol(node.name, node.expression);
        return;
      }
      if (ts.isIdentifier(node)) {
        const p = node.parent;
        const declared =
          (ts.isVariableDeclaration(p) ||
            ts.isFunctionDeclaration(p) ||
            ts.isClassDeclaration(p) ||
            ts.isParameter(p) ||
            ts.isPropertyDeclaration(p) ||
            ts.isMethodDeclaration(p) ||
            ts.isGetAccessorDeclaration(p) ||
            ts.isSetAccessorDeclaration(p) ||
            ts.isPropertyAssignment(p) ||
            ts.isBindingElement(p) ||
            ts.isEnumMember(p) ||
            ts.isLabeledStatement(p)) &&
          (p as { name?: ts.Node }).name === node;
        if (!declared) checkSymbol(node, null);
        return;
      }
      if (ts.isForOfStatement(node) && !isArrayLike(node.expression))
        report(node.expression, 'for-of over a non-array needs an iterator (Symbol) in ES5');
      if (ts.isSpreadElement(node) && !isArrayLike(node.expression))
        report(node, 'spread of a non-array needs an iterator (Symbol) in ES5');
      if (
        (ts.isFunctionLike(node) &&
          ts.canHaveModifiers(node) &&
          ts.getModifiers(node)?.some((m) => m.kind === ts.SyntaxKind.AsyncKeyword)) ||
        ts.isAwaitExpression(node)
      )
        report(node, 'async needs Promise');
      if (
        (ts.isFunctionDeclaration(node) || ts.isFunctionExpression(node) || ts.isMethodDeclaration(node)) &&
        node.asteriskToken
      )
        report(node, 'a generator');
      if (ts.isBigIntLiteral(node)) report(node, 'BigInt');
      if (ts.isRegularExpressionLiteral(node) && /\/[a-z]*[uysdv][a-z]*$/.test(node.text))
        report(node, 'regular expression flags past ES5');
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return out;
}

/**
 * Syntax past ES5 in built JavaScript (the ES5 builds' output): what a strict ES5.1 parser
 * would refuse, as `line: what` strings. Duktape is lenient about some of it; other engines
 * are not.
 */
export function es5SyntaxProblems(code: string): string[] {
  const sf = ts.createSourceFile('built.js', code, ts.ScriptTarget.ES5, true, ts.ScriptKind.JS);
  const out: string[] = [];
  const at = (node: ts.Node, what: string) =>
    out.push(`${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1}: ${what}`);
  const BANNED: Partial<Record<ts.SyntaxKind, string>> = {
    [ts.SyntaxKind.ArrowFunction]: 'arrow function',
    [ts.SyntaxKind.ClassDeclaration]: 'class',
    [ts.SyntaxKind.ClassExpression]: 'class',
    [ts.SyntaxKind.TemplateExpression]: 'template literal',
    [ts.SyntaxKind.NoSubstitutionTemplateLiteral]: 'template literal',
    [ts.SyntaxKind.TaggedTemplateExpression]: 'tagged template',
    [ts.SyntaxKind.SpreadElement]: 'spread',
    [ts.SyntaxKind.SpreadAssignment]: 'object spread',
    [ts.SyntaxKind.ForOfStatement]: 'for-of',
    [ts.SyntaxKind.ShorthandPropertyAssignment]: 'shorthand property',
    [ts.SyntaxKind.ComputedPropertyName]: 'computed property name',
    [ts.SyntaxKind.ObjectBindingPattern]: 'destructuring',
    [ts.SyntaxKind.ArrayBindingPattern]: 'destructuring',
    [ts.SyntaxKind.AwaitExpression]: 'await',
    [ts.SyntaxKind.YieldExpression]: 'yield',
    [ts.SyntaxKind.MetaProperty]: 'new.target / import.meta',
    [ts.SyntaxKind.BigIntLiteral]: 'BigInt',
    [ts.SyntaxKind.ImportDeclaration]: 'import',
    [ts.SyntaxKind.ExportDeclaration]: 'export',
    [ts.SyntaxKind.QuestionDotToken]: 'optional chaining',
    [ts.SyntaxKind.QuestionQuestionToken]: '??',
    [ts.SyntaxKind.AsteriskAsteriskToken]: '**',
  };
  const visit = (node: ts.Node): void => {
    const banned = BANNED[node.kind];
    if (banned !== undefined) at(node, banned);
    if (ts.isVariableDeclarationList(node) && (node.flags & (ts.NodeFlags.Let | ts.NodeFlags.Const)) !== 0)
      at(node, 'let/const');
    if (ts.isParameter(node) && (node.initializer !== undefined || node.dotDotDotToken !== undefined))
      at(node, 'default or rest parameter');
    if (ts.isMethodDeclaration(node) && ts.isObjectLiteralExpression(node.parent))
      at(node, 'method shorthand');
    if (ts.isNumericLiteral(node) && /^0[bBoO]/.test(node.getText(sf))) at(node, 'binary/octal literal');
    if (ts.isRegularExpressionLiteral(node) && /\/[a-z]*[uysdv][a-z]*$/.test(node.text))
      at(node, 'regexp flags');
    ts.forEachChild(node, visit);
  };
  visit(sf);
  for (const d of (sf as unknown as { parseDiagnostics?: ts.Diagnostic[] }).parseDiagnostics ?? [])
    out.push(`parse: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { buildEs5 } = await import('./build-es5.ts');
  const files = new Set<string>();
  for (const part of ['codec', 'client-core'] as const)
    for (const f of (await buildEs5(part)).sources) files.add(f);
  const found = checkEs5([...files]);
  console.log(`${files.size} source files of the ES5 builds checked`);
  for (const v of found) console.log(`${v.file}:${v.line}: ${v.text}: ${v.why}`);
  if (found.length > 0) process.exitCode = 1;
}
