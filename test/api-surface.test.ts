/**
 * The public surface (both package entries), read with the TypeScript compiler: every exported function
 * and class has a doc comment (the API reference, `npm run docs`, is built from them), the engine's
 * internals are not exported, and the example input has one name, `inputShape` (older names only as
 * @deprecated aliases).
 */
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';

let checker: ts.TypeChecker;
/** Every export of both entries by dotted name (namespaces such as `autograd.relu` expanded). */
const exported = new Map<string, ts.Symbol>();

beforeAll(() => {
  const config = ts.getParsedCommandLineOfConfigFile('tsconfig.types.json', {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} })!;
  const program = ts.createProgram(['src/browser.ts', 'src/index.ts'], { ...config.options, noEmit: true });
  checker = program.getTypeChecker();
  const walk = (prefix: string, symbols: ts.Symbol[]) => {
    for (const s of symbols) {
      const r = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
      if (r.flags & ts.SymbolFlags.ValueModule) walk(`${prefix}${s.name}.`, checker.getExportsOfModule(r));
      else exported.set(`${prefix}${s.name}`, r);
    }
  };
  for (const entry of ['src/browser.ts', 'src/index.ts']) walk('', checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(entry)!)!));
}, 120_000);

const isDeprecated = (s: ts.Symbol) => (s.declarations ?? []).some((d) => ts.getJSDocTags(d).some((t) => t.tagName.text === 'deprecated'));

describe('the public API', () => {
  it('documents every exported function and class (at least one line)', () => {
    expect(exported.size).toBeGreaterThan(150);
    const missing = [...exported].filter(([, s]) => s.flags & (ts.SymbolFlags.Function | ts.SymbolFlags.Class))
      .filter(([, s]) => !ts.displayPartsToString(s.getDocumentationComment(checker)).trim()).map(([name]) => name);
    expect(missing).toEqual([]);
  });

  it('keeps the engine and pruner internals (kernel launchers, uniform packing, pool size classes, tracer, rounding and ranking helpers) out of the entries', () => {
    for (const name of ['kernels.matmul', 'Params', 'grid1d', 'poolSizeClass', 'traceOps', 'traceGraph', 'setOnnxRuntimeModule', 'keptCount', 'roundKept', 'lampScores', 'splitByImportance', 'assertCriterion']) expect(exported.has(name), name).toBe(false);
    for (const name of ['prune', 'importOnnx', 'exportOnnx', 'createModel', 'evaluate', 'autograd.relu', 'Runtime', 'evaluateOnnxRuntime', 'registerOp', 'opSpec', 'CHANNEL_RULES', 'keepInputs', 'setFusedInference', 'ChannelSlice']) expect(exported.has(name), name).toBe(true);
  });

  it('names the example input inputShape everywhere; exampleInput and imageShape only as deprecated aliases', () => {
    const old = new Set(['exampleInput', 'imageShape']);
    const offenders: string[] = [];
    let inputShapes = 0;
    const checkProperties = (owner: string, type: ts.Type) => {
      for (const p of type.getProperties()) {
        if (p.name === 'inputShape') inputShapes++;
        if (old.has(p.name) && !isDeprecated(p)) offenders.push(`${owner}.${p.name}`);
      }
    };
    for (const [name, s] of exported) {
      if (s.flags & ts.SymbolFlags.Function) {
        for (const sig of checker.getTypeOfSymbol(s).getCallSignatures()) {
          for (const param of sig.getParameters()) {
            if (param.name === 'inputShape') inputShapes++;
            if (old.has(param.name)) offenders.push(`${name}(${param.name})`);
            const type = checker.getTypeOfSymbol(param);
            for (const t of type.isUnion() ? type.types : [type]) if (t.flags & ts.TypeFlags.Object) checkProperties(`${name}(${param.name})`, t);
          }
        }
      } else if (s.flags & ts.SymbolFlags.Interface) checkProperties(name, checker.getDeclaredTypeOfSymbol(s));
    }
    expect(offenders).toEqual([]);
    expect(inputShapes).toBeGreaterThan(5); // prune, dependencyGroups, complexity, inferenceSpeed, exportOnnx, evaluateOnnxRuntime...
  });
});
