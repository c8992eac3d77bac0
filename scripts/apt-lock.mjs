// Waiting for the package manager: on a fresh machine unattended-upgrades (or another apt-get) often holds
// dpkg's and apt's locks for minutes after boot, and apt-get fails at once when it cannot take them. The
// setup scripts wait here first, saying which process they wait for, then give apt-get its own lock timeout.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export const APT_LOCKS = ['/var/lib/dpkg/lock-frontend', '/var/lib/dpkg/lock', '/var/lib/apt/lists/lock', '/var/cache/apt/archives/lock'];
/** Seconds to wait for the locks (INTRA_FUSION_APT_LOCK_TIMEOUT, default 10 minutes). */
export const LOCK_TIMEOUT_S = Number(process.env.INTRA_FUSION_APT_LOCK_TIMEOUT ?? 600);
/** apt-get with its own wait for the dpkg lock, in case another process takes it after we looked. */
export const APT_GET = `apt-get -o DPkg::Lock::Timeout=${LOCK_TIMEOUT_S}`;

/** The command line of a process, shortened, for messages. */
function commandOf(pid) {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return cmd.length > 80 ? `${cmd.slice(0, 77)}...` : cmd;
  } catch {
    return '?';
  }
}

/**
 * Processes that have one of `paths` open (apt and dpkg keep a lock file open exactly while they hold it),
 * found through /proc; an empty list where /proc is not readable.
 */
export function lockHolders(paths = APT_LOCKS) {
  let pids;
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid);
  } catch {
    return [];
  }
  const holders = [];
  for (const pid of pids) {
    let fds;
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let target;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (paths.includes(target)) {
        holders.push({ pid: Number(pid), path: target, command: commandOf(pid) });
        break;
      }
    }
  }
  return holders;
}

/**
 * Waits until no process holds `paths`, printing what it waits for (at once, when the holders change, and
 * every 30 s). Returns true when the locks are free, false after `timeoutS` seconds.
 */
export async function waitForAptLocks({ paths = APT_LOCKS, timeoutS = LOCK_TIMEOUT_S, pollMs = 1000, log = console.log } = {}) {
  const start = Date.now();
  let said = '';
  let saidAt = 0;
  for (;;) {
    const holders = lockHolders(paths);
    if (!holders.length) {
      if (said) log(`the package manager lock is free after ${((Date.now() - start) / 1e3).toFixed(0)} s`);
      return true;
    }
    const waited = (Date.now() - start) / 1e3;
    if (waited >= timeoutS) return false;
    const what = holders.map((h) => `${h.path} is held by process ${h.pid} (${h.command})`).join('; ');
    if (what !== said || Date.now() - saidAt > 30_000) {
      log(`waiting for the package manager lock (up to ${timeoutS} s, waited ${waited.toFixed(0)} s): ${what}`);
      said = what;
      saidAt = Date.now();
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Waits for the locks, or exits with a message naming the holders when they are still held. */
export async function waitForAptLocksOrExit() {
  if (await waitForAptLocks()) return;
  const holders = lockHolders().map((h) => `process ${h.pid} (${h.command})`).join(', ');
  console.error(`The package manager is still busy after ${LOCK_TIMEOUT_S} s (${holders}). Wait for it to finish, or set INTRA_FUSION_APT_LOCK_TIMEOUT=SECONDS, and run this again.`);
  process.exit(1);
}
