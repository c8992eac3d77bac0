// Makes sure a WebGPU adapter is available before tests or benchmarks run.
// Without one (or with a Mesa lavapipe too old for Dawn) on Debian bookworm as root, it installs Mesa
// lavapipe from bookworm-backports; elsewhere it prints exactly what to run and exits non-zero.
import { execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { APT_GET, waitForAptLocksOrExit } from './apt-lock.mjs';

const MIN_MESA = 23;
const BACKPORTS = '/etc/apt/sources.list.d/bookworm-backports.list';
const INSTRUCTIONS = [
  "echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list",
  'apt-get update',
  'apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1',
];

async function probe() {
  // Each probe runs in a child process: a Dawn instance caches the Vulkan drivers it found at start-up.
  const code = `
    import('webgpu').then(async ({ create }) => {
      const gpu = create([]);
      const a = await gpu.requestAdapter();
      const i = a?.info ?? {};
      console.log(JSON.stringify(a ? { found: true, description: [i.vendor, i.architecture, i.device, i.description].join(' / ') } : { found: false }));
      process.exit(0);
    }).catch((e) => { console.log(JSON.stringify({ found: false, error: String(e) })); process.exit(0); });`;
  try {
    const out = execSync(`node --input-type=module -e "${code.replace(/"/g, '\\"')}"`, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return JSON.parse(out.trim().split('\n').pop());
  } catch (e) {
    return { found: false, error: String(e) };
  }
}

function mesaTooOld(description) {
  const m = /Mesa (\d+)\./.exec(description);
  return m !== null && Number(m[1]) < MIN_MESA;
}

function canInstall() {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  if (!existsSync('/etc/os-release') || !/VERSION_CODENAME=bookworm/.test(readFileSync('/etc/os-release', 'utf8'))) return false;
  try {
    execSync('command -v apt-get', { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let state = await probe();
if (state.found && !mesaTooOld(state.description)) {
  console.log(`WebGPU adapter: ${state.description}`);
  process.exit(0);
}
const why = state.found ? `the adapter (${state.description}) is a Mesa older than ${MIN_MESA}, too old for Dawn` : 'no WebGPU adapter was found';
if (!canInstall()) {
  console.error(`${why}. On Debian bookworm, install Mesa lavapipe (software Vulkan) as root:\n  ${INSTRUCTIONS.join('\n  ')}`);
  process.exit(1);
}
console.log(`${why}; installing Mesa lavapipe from bookworm-backports...`);
if (!existsSync(BACKPORTS)) writeFileSync(BACKPORTS, 'deb http://deb.debian.org/debian bookworm-backports main\n');
await waitForAptLocksOrExit();
execSync(`${APT_GET} update -qq`, { stdio: 'inherit' });
execSync(`DEBIAN_FRONTEND=noninteractive ${APT_GET} install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1`, { stdio: 'inherit' });
state = await probe();
if (!state.found || mesaTooOld(state.description)) {
  console.error(`Still no usable WebGPU adapter after installing lavapipe (${state.error ?? state.description ?? 'none'}).`);
  process.exit(1);
}
console.log(`WebGPU adapter: ${state.description}`);
