/**
 * Time for the queue engine. Everything that waits (retry due times, idle
 * timeouts, batch latency) asks a Clock, so tests can drive time by hand.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** unix ms */
  now(): number;
  /** Call `fn` after `ms` (0 or less: soon). */
  setTimer(ms: number, fn: () => void): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
};

/** A promise that resolves after `ms` on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}
