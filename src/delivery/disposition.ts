/**
 * The one place that decides what each outcome of a delivery attempt means
 * (kumomta-facts §7):
 *
 *   a returned string (or number)      → Delivery, response 200 <text>
 *   kumo.reject(4xx, m)                 → TransientFailure, retried; 421 also closes the connection
 *   kumo.reject(any other code, m)      → Bounce (permanent), even for 2xx
 *   a Lua error, nil, or a wrong value  → TransientFailure 400, and the connection is closed
 *   the constructor failed              → TransientFailure 400 for every popped message
 *
 * The "KumoMTA internal:" wording is kept: policies and log consumers match on it.
 */
import { RejectError } from '../errors.js';
import { response, type Response } from '../logging/record.js';

export type Outcome =
  | { kind: 'delivered'; response: Response }
  | { kind: 'transient'; response: Response; closeConnection: boolean }
  | { kind: 'bounce'; response: Response };

export function classifyResult(result: { ok: true; text: string } | { ok: false; error: unknown }, method: 'send' | 'send_batch'): Outcome {
  if (result.ok) return { kind: 'delivered', response: response(200, result.text) };
  const err = result.error;
  if (err instanceof RejectError) {
    const r = response(err.smtpCode, err.response);
    if (err.smtpCode >= 400 && err.smtpCode < 500) return { kind: 'transient', response: r, closeConnection: err.smtpCode === 421 };
    return { kind: 'bounce', response: r };
  }
  const message = err instanceof Error ? err.message : String(err);
  const chain = message.includes(`sender:${method} method`) ? message : `sender:${method} method failed: ${message}`;
  return { kind: 'transient', response: response(400, `KumoMTA internal: error in deliver_message: ${chain}`), closeConnection: true };
}

export function connectFailure(err: unknown): Outcome {
  const message = err instanceof Error ? err.message : String(err);
  return {
    kind: 'transient',
    response: response(400, `KumoMTA internal: failed to connect to any candidate hosts: ${message}`),
    closeConnection: true,
  };
}
