/** Progress bars on stderr: redrawn in place on a terminal, a line every 10% otherwise (logs, CI). */

export class ProgressBar {
  private readonly start = performance.now();
  private lastDecile = -1;
  constructor(private readonly label: string, private readonly total: number, private readonly stream = process.stderr) {}

  update(done: number): void {
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const elapsed = (performance.now() - this.start) / 1e3;
    const eta = frac > 0 ? (elapsed * (1 - frac)) / frac : NaN;
    const text = `${this.label} ${done}/${this.total} ${(frac * 100).toFixed(0)}% ${elapsed.toFixed(0)}s elapsed${frac < 1 && Number.isFinite(eta) ? `, ~${eta.toFixed(0)}s left` : ''}`;
    // Under the CLI's stderr filter (main.ts) the stream is a pipe to a terminal.
    if (this.stream.isTTY || (this.stream === process.stderr && process.env.INTRA_FUSION_STDERR_TTY === '1')) {
      const width = 24;
      const filled = Math.round(frac * width);
      this.stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
      if (frac >= 1) this.stream.write('\n');
    } else {
      const decile = Math.floor(frac * 10);
      if (decile !== this.lastDecile) {
        this.lastDecile = decile;
        this.stream.write(`${text}\n`);
      }
    }
  }
}
