/**
 * The events a policy can register with `kumo.on`, declared once.
 *
 * A Multiple event keeps every handler, in registration order; when it fires
 * the handlers run in turn until one returns a value (returning nothing, or
 * only nils, means "no opinion: ask the next one"). Every other name,
 * including the custom ones a policy invents (`make.webhook`, ...), is Single:
 * a second `kumo.on` for it is an error, as in KumoMTA.
 */
export interface EventDeclaration {
  multiple: boolean;
  args: string;
  returns: string;
  doc: string;
}

export const DECLARED_EVENTS: Readonly<Record<string, EventDeclaration>> = Object.freeze({
  pre_init: { multiple: true, args: '()', returns: 'nothing', doc: 'once at start, before init; helpers such as log_hooks use it to call configure_log_hook' },
  init: { multiple: false, args: '()', returns: 'nothing', doc: 'once at start; an error here aborts the start' },
  validate_config: { multiple: true, args: '()', returns: 'nothing', doc: 'after init under `sluice check`' },
  should_enqueue_log_record: { multiple: true, args: '(msg, hook_name)', returns: 'boolean', doc: 'once per log record per hook; true queues the record message (set its `queue` meta first)' },
  get_queue_config: { multiple: true, args: '(domain, tenant, campaign, routing_domain)', returns: 'kumo.make_queue_config{...}', doc: 'when a scheduled queue is first used, and again when the policy changes' },
  get_egress_path_config: { multiple: false, args: '(routing_domain, egress_source, site_name)', returns: 'kumo.make_egress_path{...}', doc: 'when a ready queue is first used' },
  requeue_message: { multiple: true, args: '(msg, response, insert_context, increment_attempts, delay)', returns: 'nothing', doc: 'before a failed message goes back to its scheduled queue' },
  throttle_insert_ready_queue: { multiple: true, args: '(msg)', returns: 'nothing', doc: 'before a message enters a ready queue' },
  get_acl_definition: { multiple: true, args: '(resource)', returns: 'ACL', doc: 'accepted for compatibility' },
  http_message_generated: { multiple: false, args: '(msg)', returns: 'nothing', doc: 'for each message injected over HTTP' },
  shutdown_logging: { multiple: false, args: '()', returns: 'nothing', doc: 'during shutdown, before the loggers stop' },
});

/** Names of the events that sluice itself fires (README table). */
export function isMultiple(name: string): boolean {
  return DECLARED_EVENTS[name]?.multiple === true;
}

export interface HandlerEntry {
  /** Registry reference of the handler function. */
  ref: number;
  /** `short_src:line` of each frame of the `kumo.on` call, innermost first. */
  registrant: string[];
}

/** Handlers registered in one VM. */
export class EventRegistry {
  readonly #handlers = new Map<string, HandlerEntry[]>();

  /** Register; returns the existing entry's location when a Single event already has one. */
  add(name: string, entry: HandlerEntry): { conflict: HandlerEntry } | null {
    const list = this.#handlers.get(name);
    if (list && !isMultiple(name)) return { conflict: list[0] as HandlerEntry };
    if (list) list.push(entry);
    else this.#handlers.set(name, [entry]);
    return null;
  }

  get(name: string): readonly HandlerEntry[] {
    return this.#handlers.get(name) ?? [];
  }

  has(name: string): boolean {
    return this.#handlers.has(name);
  }

  names(): string[] {
    return [...this.#handlers.keys()];
  }
}
