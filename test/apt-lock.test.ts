/**
 * scripts/apt-lock.mjs: the setup scripts (ensure-gpu, ensure-browser) wait for a busy package manager
 * instead of failing, and say which process they wait for. A shell holding a lock file open stands in for
 * unattended-upgrades holding /var/lib/dpkg/lock-frontend.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

type Holder = { pid: number; path: string; command: string };
type AptLock = {
  lockHolders(paths: string[]): Holder[];
  waitForAptLocks(o: { paths: string[]; timeoutS: number; pollMs: number; log: (line: string) => void }): Promise<boolean>;
};
const modulePath: string = '../scripts/apt-lock.mjs'; // plain JS, no declarations: typed here
const { lockHolders, waitForAptLocks } = (await import(modulePath)) as AptLock;

const dir = mkdtempSync(join(tmpdir(), 'if-apt-lock-'));
const lock = join(dir, 'lock-frontend');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A process that holds `lock` open for `seconds`, as apt does while it holds the lock. */
async function holdLock(seconds: number): Promise<ChildProcess> {
  const child = spawn('bash', ['-c', `exec 3>"${lock}"; sleep ${seconds}`], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !lockHolders([lock]).length; i++) await new Promise((r) => setTimeout(r, 50));
  return child;
}

describe('waiting for the package manager lock', () => {
  it('names the process holding the lock, waits until it lets go, then says so', async () => {
    const holder = await holdLock(2);
    expect(lockHolders([lock])).toEqual(expect.arrayContaining([expect.objectContaining({ pid: holder.pid, path: lock, command: `sleep 2` })]));
    const lines: string[] = [];
    const start = Date.now();
    expect(await waitForAptLocks({ paths: [lock], timeoutS: 60, pollMs: 100, log: (l) => lines.push(l) })).toBe(true);
    expect(Date.now() - start).toBeGreaterThan(1000);
    expect(lines[0]).toMatch(new RegExp(`^waiting for the package manager lock \\(up to 60 s, waited 0 s\\): ${lock} is held by process ${holder.pid} \\(sleep 2\\)$`));
    expect(lines.at(-1)).toMatch(/^the package manager lock is free after \d+ s$/);
    expect(lockHolders([lock])).toEqual([]);
  });

  it('gives up after the timeout while the lock is still held, and is silent when it is free', async () => {
    const holder = await holdLock(30);
    const lines: string[] = [];
    expect(await waitForAptLocks({ paths: [lock], timeoutS: 1, pollMs: 100, log: (l) => lines.push(l) })).toBe(false);
    expect(lines).toHaveLength(1);
    holder.kill();
    await new Promise((r) => holder.on('exit', r));
    // The sleep child inherited the descriptor; wait for it too.
    for (let i = 0; i < 100 && lockHolders([lock]).length; i++) await new Promise((r) => setTimeout(r, 100));
    const quiet: string[] = [];
    expect(await waitForAptLocks({ paths: [lock], timeoutS: 1, pollMs: 100, log: (l) => quiet.push(l) })).toBe(true);
    expect(quiet).toEqual([]);
  });
});
