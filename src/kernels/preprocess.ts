/**
 * A minimal WGSL preprocessor: `#if NAME` / `#if !NAME`, `#else`, `#endif` lines keep or drop text according to
 * boolean flags. WGSL has no conditional compilation, and some variants (subgroup builtins) cannot
 * even be parsed on devices that lack the feature, so override constants are not enough there.
 */
export function preprocess(source: string, flags: Record<string, boolean>): string {
  const out: string[] = [];
  const stack: { active: boolean; taken: boolean }[] = [];
  const active = () => stack.every((s) => s.active);
  source.split('\n').forEach((line, i) => {
    const m = /^\s*#(if|else|endif)\b\s*(!?\w*)/.exec(line);
    if (!m) {
      if (active()) out.push(line);
      return;
    }
    const [, directive, expr] = m;
    if (directive === 'if') {
      const name = expr.replace(/^!/, '');
      if (!(name in flags)) throw new Error(`WGSL preprocess: unknown flag "${name}" on line ${i + 1}`);
      const value = expr.startsWith('!') ? !flags[name] : flags[name];
      stack.push({ active: value, taken: value });
    } else if (directive === 'else') {
      const top = stack[stack.length - 1];
      if (!top) throw new Error(`WGSL preprocess: #else without #if on line ${i + 1}`);
      top.active = !top.taken;
    } else if (!stack.pop()) {
      throw new Error(`WGSL preprocess: #endif without #if on line ${i + 1}`);
    }
  });
  if (stack.length) throw new Error('WGSL preprocess: unterminated #if');
  return out.join('\n');
}
