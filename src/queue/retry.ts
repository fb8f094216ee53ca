/**
 * What happens to a message after a transient failure: KumoMTA's schedule
 * (kumomta-facts §5.3), exactly.
 *
 *   delay   = min(retry_interval · 2^attempts, max_retry_interval), whole seconds
 *   jitter  = trunc(rand·m − m/2) seconds, m = min(retry_interval / 20, 60)
 *   expires when age + delay > max_age (age counted from creation)
 */
import { formatDuration } from '../config/duration.js';
import { delayForAttempt, type QueueConfig } from './config.js';

export type RetryDecision =
  | { kind: 'retry'; due: number; attempts: number }
  | { kind: 'expire'; attempts: number; content: string };

export function decideRetry(
  cfg: Pick<QueueConfig, 'retry_interval' | 'max_retry_interval' | 'max_age'>,
  msg: { numAttempts: number; created: number },
  now: number,
  rand: () => number = Math.random,
): RetryDecision {
  const delay = delayForAttempt(cfg, msg.numAttempts);
  const attempts = msg.numAttempts + 1;
  const m = Math.min(cfg.retry_interval / 1000 / 20, 60);
  const jitter = Math.trunc(rand() * m - m / 2);
  const delayMs = Math.max(0, delay + jitter * 1000);
  const age = Math.max(0, now - msg.created);
  if (age + delay > cfg.max_age) {
    return {
      kind: 'expire',
      attempts,
      content: `Next delivery time would be ${formatDuration(age + delay)} after creation, which exceeds max_age=${formatDuration(cfg.max_age)}`,
    };
  }
  return { kind: 'retry', due: now + delayMs, attempts };
}

/** A uniformly random delay in [0, maxMs), for requeues that do not count as attempts. */
export function delayWithJitter(maxMs: number, rand: () => number = Math.random): number {
  return Math.floor(rand() * maxMs);
}
