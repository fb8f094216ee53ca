/**
 * A clock the test moves by hand, for retry arithmetic, batch latency and
 * idle timeouts. Real I/O (loopback HTTP, spool commits) still runs in real
 * time; tests wait on conditions after advancing.
 */
import type { Clock, Timer } from '../../src/queue/clock.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export class FakeClock implements Clock {
  #t: number;
  #seq = 0;
  #timers: Pending[] = [];
  /**
   * True while work started by a timer still waits on real I/O that the
   * clock must not run ahead of (the spool thread's replies). `advance`
   * waits, in real time, until it is false before firing the next timer.
   */
  busy: () => boolean = () => false;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#t = start;
  }

  now(): number {
    return this.#t;
  }

  setTimer(ms: number, fn: () => void): Timer {
    const p: Pending = { at: this.#t + Math.max(0, ms), seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(p);
    return { cancel: () => (p.cancelled = true) };
  }

  /** Timers waiting, earliest first. */
  pending(): number[] {
    return this.#timers.filter((p) => !p.cancelled).map((p) => p.at).sort((a, b) => a - b);
  }

  /** Move time forward by `ms`, firing every timer due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.#t + ms;
    for (;;) {
      this.#timers = this.#timers.filter((p) => !p.cancelled);
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers[0];
      if (!next || next.at > target) break;
      this.#timers.shift();
      this.#t = Math.max(this.#t, next.at);
      next.fn();
      await this.quiet();
    }
    this.#t = target;
    await this.quiet();
  }

  /** Let promise callbacks and immediates run, and wait out `busy`. */
  async quiet(): Promise<void> {
    await settle();
    while (this.busy()) {
      await new Promise((r) => setTimeout(r, 1));
      await settle();
    }
  }
}

/** Let pending promise callbacks and immediates run. */
export async function settle(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

/** Poll `check` (with real time) until it returns a truthy value. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const start = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
