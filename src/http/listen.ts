/**
 * Listen addresses, `HOST:PORT` (IPv6 as `[::1]:PORT`), as `sluice serve
 * --listen`, `kumo.start_http_listener{ listen }` and `sluice receive
 * --listen` take them. One parser; each caller words its own error.
 */
import net from 'node:net';

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** The parts of `value`, or why it is not a listen address. */
export function splitListen(value: string): { host: string; port: number } | { problem: string } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(value.trim());
  if (!m) return { problem: 'expected HOST:PORT' };
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (m[1] !== undefined && !net.isIPv6(host)) return { problem: `${host} is not an IPv6 address` };
  if (m[2] !== undefined && !net.isIPv4(host) && !HOSTNAME_RE.test(host)) {
    return { problem: host === '' ? 'the host is missing' : `${JSON.stringify(host)} is not an IP address or host name` };
  }
  if (port > 65535) return { problem: `port ${port} is above 65535` };
  return { host, port };
}
