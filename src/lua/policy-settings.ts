/**
 * What a policy asked for while it loaded (`configure_log_hook`,
 * `configure_local_logs`, `start_http_listener`, ...). The Lua functions
 * validate their options and record them here; the engine reads this record
 * when it starts. Each entry keeps where the call was made.
 */
import type { LogHookParams, LocalLogsParams, DispositionHookParams } from '../logging/hook-config.js';

export interface HttpListenerParams {
  listen: string;
  trusted_hosts: string[];
  request_body_limit: number;
  where: string;
}

export class PolicySettings {
  readonly logHooks = new Map<string, LogHookParams & { where: string }>();
  readonly dispositionHooks = new Map<string, DispositionHookParams & { where: string }>();
  readonly localLogs: Array<LocalLogsParams & { where: string }> = [];
  readonly httpListeners: HttpListenerParams[] = [];
  /** MTA-only calls that were accepted and ignored, once per name. */
  readonly ignoredCalls = new Set<string>();
}
