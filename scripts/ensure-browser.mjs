// Makes sure Debian's Chromium is present for the browser test (test/browser.test.ts). Installs it with
// apt-get on Debian as root; elsewhere prints what to run. SKIP_BROWSER=1 skips the check and the test.
import { execSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { APT_GET, waitForAptLocksOrExit } from './apt-lock.mjs';

const path = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (process.env.SKIP_BROWSER === '1' || existsSync(path)) process.exit(0);
const root = process.platform === 'linux' && process.getuid?.() === 0;
let apt = false;
try {
  execSync('command -v apt-get', { stdio: 'ignore' });
  apt = true;
} catch {}
if (!root || !apt) {
  console.error(`Chromium not found at ${path}. Install it (Debian: apt-get install chromium), set CHROMIUM_PATH, or set SKIP_BROWSER=1.`);
  process.exit(1);
}
console.log('Installing Debian chromium for the browser test...');
await waitForAptLocksOrExit();
execSync(`${APT_GET} update -qq && DEBIAN_FRONTEND=noninteractive ${APT_GET} install -y -qq chromium`, { stdio: 'inherit' });
if (!existsSync(path)) {
  console.error(`apt-get finished but ${path} is still missing.`);
  process.exit(1);
}
