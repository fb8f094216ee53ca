/**
 * Egress webhooks over HTTP, on klev's paths (klev-facts §2):
 *
 *   POST   /egress_webhooks                 {log_id, destination, payload?, metadata?} → the webhook with its `secret`
 *   GET    /egress_webhooks[?metadata=]     {"egress_webhooks": [...]}
 *   GET    /egress_webhook/{id}
 *   PATCH  /egress_webhook/{id}             {metadata?, destination?, active?}  (active: true re-activates)
 *   PATCH  /egress_webhook/{id}/secret      {expire_seconds}  → the webhook with the new `secret`
 *   GET    /egress_webhook/{id}/status
 *   DELETE /egress_webhook/{id}
 *
 * The secret is shown only by create and rotate, and never logged.
 */
import type { Route } from '../server.js';
import { HttpError } from '../server.js';
import type { EgressWebhooks, Payload } from '../../egress/webhooks.js';
import { bad, boolean, kind, object, string } from '../validate.js';
import { klev } from './logs-v1.js';

function destination(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new HttpError(400, 'egress-webhook-destination-invalid', `destination: '${v}' is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new HttpError(400, 'egress-webhook-destination-invalid', `destination: only http and https URLs, got ${url.protocol}`);
  return v;
}

export function egressWebhookRoutes(hooks: () => EgressWebhooks): Route[] {
  return [
    {
      method: 'POST', path: '/egress_webhooks',
      handler: (req) => klev(async () => {
        const o = object(req.body, '', ['log_id', 'destination', 'payload', 'metadata']);
        const payload = (string(o, 'payload', '') ?? 'message') as Payload;
        if (!['message', 'key', 'value'].includes(payload)) throw new HttpError(400, 'egress-webhook-payload-invalid', `payload: expected message, key or value, got '${payload}'`);
        const created = await hooks().create({
          log_id: string(o, 'log_id', '', true),
          destination: destination(string(o, 'destination', '', true)) as string,
          payload,
          metadata: string(o, 'metadata', '') ?? '',
        });
        return { json: created };
      }),
    },
    { method: 'GET', path: '/egress_webhooks', handler: (req) => klev(() => ({ json: { egress_webhooks: hooks().list(req.query.get('metadata') ?? undefined) } })) },
    { method: 'GET', path: '/egress_webhook/:id', handler: (req) => klev(() => ({ json: hooks().get(req.params.id as string) })) },
    {
      method: 'PATCH', path: '/egress_webhook/:id',
      handler: (req) => klev(async () => {
        const o = object(req.body, '', ['metadata', 'destination', 'active']);
        const active = boolean(o, 'active', '');
        return { json: await hooks().update(req.params.id as string, { metadata: string(o, 'metadata', ''), destination: destination(string(o, 'destination', '')), active }) };
      }),
    },
    {
      method: 'PATCH', path: '/egress_webhook/:id/secret',
      handler: (req) => klev(async () => {
        const o = object(req.body ?? {}, '', ['expire_seconds']);
        const e = o.expire_seconds ?? 0;
        if (typeof e !== 'number' || !Number.isInteger(e) || e < 0) throw bad('expire_seconds', `expected a non-negative integer, got ${kind(e)}`);
        return { json: await hooks().rotate(req.params.id as string, e) };
      }),
    },
    { method: 'GET', path: '/egress_webhook/:id/status', handler: (req) => klev(() => ({ json: hooks().status(req.params.id as string) })) },
    { method: 'DELETE', path: '/egress_webhook/:id', handler: (req) => klev(async () => ({ json: await hooks().delete(req.params.id as string) })) },
  ];
}
