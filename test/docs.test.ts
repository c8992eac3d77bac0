/**
 * The README's op table is generated from the op specs: this fails when they differ. `npm run docs:ops`
 * (UPDATE_DOCS=1) rewrites the README's table instead.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withOpTable } from '../src/graph/docs.js';

describe('README op table', () => {
  it('equals the table generated from the op specs', () => {
    const readme = readFileSync('README.md', 'utf8');
    const generated = withOpTable(readme);
    if (process.env.UPDATE_DOCS === '1') writeFileSync('README.md', generated);
    else expect(readme, 'README op table is stale: run npm run docs:ops').toBe(generated);
  });
});
