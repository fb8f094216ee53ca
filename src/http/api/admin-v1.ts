/**
 * Admin routes, as KumoMTA names them:
 *
 *   GET    /api/admin/queues/v1            per queue: scheduled, ready, in flight, delivered, failed, suspended
 *   GET    /api/admin/bounce/v1            active admin bounces
 *   POST   /api/admin/bounce/v1            { queue_names?, domain?, tenant?, campaign?, reason, duration? | expires? }
 *   DELETE /api/admin/bounce/v1            { id }
 *   GET    /api/admin/suspend/v1           active suspensions
 *   POST   /api/admin/suspend/v1           { queue_names?, domain?, tenant?, campaign?, reason, duration? | expires? }
 *   DELETE /api/admin/suspend/v1           { id }
 *   POST   /api/admin/bump-config-epoch    reload the policy
 *   GET    /api/check-liveness/v1
 */
import type { Engine } from '../../engine.js';
import { HttpError, type Route } from '../server.js';
import { bad, object, string, stringList, type Json } from '../validate.js';
import { parseDuration } from '../../config/duration.js';

const MATCH_FIELDS = ['queue_names', 'domain', 'tenant', 'campaign', 'routing_domain', 'reason', 'duration', 'expires', 'suppress_logging'];

export interface AdminHooks {
  /** Reload the policy; resolves with the outcome. */
  reload: () => Promise<{ ok: boolean; error?: string; epoch: number }>;
}

export function adminRoutes(engine: () => Engine, hooks: AdminHooks): Route[] {
  const until = (o: Json, defaultMs: number): number => {
    const duration = o.duration;
    const expires = string(o, 'expires', '');
    if (duration !== undefined && expires !== undefined) throw bad('duration', 'give either duration or expires, not both');
    if (expires !== undefined) {
      const t = Date.parse(expires);
      if (Number.isNaN(t)) throw bad('expires', `'${expires}' is not an RFC 3339 time`);
      return t;
    }
    if (duration === undefined) return engine().clock.now() + defaultMs;
    try {
      return engine().clock.now() + parseDuration(duration);
    } catch (err) {
      throw bad('duration', (err as Error).message);
    }
  };
  const criteria = (o: Json) => ({
    queueNames: stringList(o, 'queue_names', ''),
    domain: string(o, 'domain', ''),
    tenant: string(o, 'tenant', ''),
    campaign: string(o, 'campaign', ''),
  });
  const idBody = (body: unknown) => string(object(body, '', ['id']), 'id', '', true);

  return [
    {
      method: 'GET', path: '/api/admin/queues/v1', admin: true,
      handler: () => ({ json: { queues: engine().manager.stats() } }),
    },
    {
      method: 'GET', path: '/api/admin/bounce/v1', admin: true,
      handler: () => ({ json: engine().manager.bounces.filter((b) => b.until > engine().clock.now()).map(bounceJson) }),
    },
    {
      method: 'POST', path: '/api/admin/bounce/v1', admin: true,
      handler: async (req) => {
        const o = object(req.body, '', MATCH_FIELDS);
        const reason = string(o, 'reason', '', true);
        const b = await engine().manager.adminBounce({ ...criteria(o), reason, until: until(o, 5 * 60_000) });
        return { json: { id: b.id, bounced: {}, total_bounced: b.bounced } };
      },
    },
    {
      method: 'DELETE', path: '/api/admin/bounce/v1', admin: true,
      handler: (req) => {
        const id = idBody(req.body);
        if (!engine().manager.cancelBounce(id)) throw new HttpError(404, 'not-found', `no admin bounce with id ${id}`);
        return { json: { id } };
      },
    },
    {
      method: 'GET', path: '/api/admin/suspend/v1', admin: true,
      handler: () => ({ json: engine().manager.suspensions().map((s) => ({ id: s.id, reason: s.reason, expires: new Date(s.until).toISOString() })) }),
    },
    {
      method: 'POST', path: '/api/admin/suspend/v1', admin: true,
      handler: (req) => {
        const o = object(req.body, '', MATCH_FIELDS);
        const reason = string(o, 'reason', '', true);
        const s = engine().manager.suspend(criteria(o), reason, until(o, 5 * 60_000));
        return { json: { id: s.id } };
      },
    },
    {
      method: 'DELETE', path: '/api/admin/suspend/v1', admin: true,
      handler: (req) => {
        const id = idBody(req.body);
        if (!engine().manager.resume(id)) throw new HttpError(404, 'not-found', `no suspension with id ${id}`);
        return { json: { id } };
      },
    },
    {
      method: 'POST', path: '/api/admin/bump-config-epoch', admin: true,
      handler: async () => {
        const r = await hooks.reload();
        return { status: r.ok ? 200 : 422, json: r };
      },
    },
    {
      method: 'GET', path: '/api/check-liveness/v1',
      handler: () => ({ json: { status: 'ok' } }),
    },
  ];
}

function bounceJson(b: { id: string; reason: string; until: number; bounced: number; queueNames?: string[]; domain?: string; tenant?: string; campaign?: string }) {
  return { id: b.id, reason: b.reason, expires: new Date(b.until).toISOString(), total_bounced: b.bounced, queue_names: b.queueNames, domain: b.domain, tenant: b.tenant, campaign: b.campaign };
}
