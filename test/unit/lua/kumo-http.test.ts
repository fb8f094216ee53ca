/**
 * kumo.http against a real HTTP server on 127.0.0.1 (port 0), through a real
 * VM: policies call the client inside event handlers, the tests check what
 * Lua got back and what the server received.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { lua, lauxlib, lualib } from 'fengari';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LuaError } from '../../../src/errors.js';
import { closeHttpClients, openKumoHttp } from '../../../src/lua/modules/kumo-http.js';
import type { LuaVM } from '../../../src/lua/vm.js';
import { call, loadPolicy } from '../../helpers/policy.js';

interface Seen {
  /** The client's port: one value per connection. */
  remotePort: number;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

type Reply = (req: Seen, res: http.ServerResponse) => void;

interface TestServer {
  url: string;
  seen: Seen[];
  reply: Reply;
  close(): Promise<void>;
}

async function startServer(): Promise<TestServer> {
  const seen: Seen[] = [];
  const srv: TestServer = {
    url: '',
    seen,
    reply: (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: Seen = { remotePort: req.socket.remotePort ?? 0, method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) };
      seen.push(s);
      srv.reply(s, res);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 2048 }, resolve));
  srv.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return srv;
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Raw headers as [lowercase name, value] pairs, duplicates kept. */
function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([(raw[i] as string).toLowerCase(), raw[i + 1] as string]);
  return out;
}

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.close();
});

afterEach(() => {
  server.seen.length = 0;
  server.reply = (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  };
});

it('openKumoHttp sets kumo.http and leaves the stack as it found it', () => {
  const L = lauxlib.luaL_newstate();
  lualib.luaL_openlibs(L);
  lua.lua_createtable(L, 0, 0);
  const top = lua.lua_gettop(L);
  openKumoHttp({} as LuaVM, L);
  expect(lua.lua_gettop(L)).toBe(top);
  expect(lua.lua_getfield(L, -1, 'http')).toBe(lua.LUA_TTABLE);
  expect(lua.lua_getfield(L, -1, 'build_client')).toBe(lua.LUA_TFUNCTION);
});

describe('kumo.http requests', () => {
  it('sends a chained post with header, basic_auth, bearer_auth and body', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client { user_agent = 'sluice-test/1' }
        local resp = client:post(url .. '/hook?x=1')
          :header('X-Test', 'yes')
          :basic_auth('user', 'pa:ss')
          :bearer_auth('tok123')
          :body('{"a":1}')
          :send()
        local status, text = resp:status_code(), resp:text()
        client:close()
        return status, resp:status_reason(), resp:status_is_success(), text
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([200, 'OK', true, 'ok']);
    expect(server.seen).toHaveLength(1);
    const req = server.seen[0] as Seen;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/hook?x=1');
    expect(req.body.toString('utf8')).toBe('{"a":1}');
    expect(req.headers['x-test']).toBe('yes');
    expect(req.headers['user-agent']).toBe('sluice-test/1');
    expect(req.headers['content-length']).toBe('7');
    expect(req.headers.accept).toBe('*/*');
    const auth = pairs(req.rawHeaders).filter(([n]) => n === 'authorization').map(([, v]) => v);
    expect(auth).toEqual([`Basic ${Buffer.from('user:pa:ss').toString('base64')}`, 'Bearer tok123']);
  });

  it('sends get and put, and the body bytes unchanged', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        local a = client:get(url .. '/g'):send():status_code()
        local b = client:put(url .. '/p'):body('caf\\xC3\\xA9 \\x00\\xFF'):send():status_code()
        local c = client:get(url .. '/u'):basic_auth('only'):send():status_code()
        return a, b, c
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([200, 200, 200]);
    expect(server.seen.map((s) => `${s.method} ${s.url}`)).toEqual(['GET /g', 'PUT /p', 'GET /u']);
    expect([...(server.seen[1] as Seen).body]).toEqual([0x63, 0x61, 0x66, 0xc3, 0xa9, 0x20, 0x00, 0xff]);
    expect((server.seen[2] as Seen).headers.authorization).toBe(`Basic ${Buffer.from('only:').toString('base64')}`);
  });

  it('sends a table of headers, and header values byte for byte', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        return client:post(url):headers({ ['X-One'] = '1', ['X-Two'] = 'two' }):header('X-Utf8', 'caf\\xC3\\xA9'):send():status_code()
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([200]);
    const req = server.seen[0] as Seen;
    expect(req.headers['x-one']).toBe('1');
    expect(req.headers['x-two']).toBe('two');
    expect(Buffer.from(req.headers['x-utf8'] as string, 'latin1').toString('utf8')).toBe('café');
  });

  it('sends form_url_encoded with its content type', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        return client:post(url):form_url_encoded({ name = 'a b&c', n = 42 }):send():status_code()
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([200]);
    const req = server.seen[0] as Seen;
    expect(req.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const params = new URLSearchParams(req.body.toString('latin1'));
    expect(params.get('name')).toBe('a b&c');
    expect(params.get('n')).toBe('42');
    expect(req.body.toString('latin1')).toContain('name=a+b%26c');
  });

  it('sends form_multipart_data with text and file parts', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        return client:post(url):form_multipart_data({
          note = 'hello',
          upload = { data = 'file\\x00bytes', file_name = 'a.bin' },
        }):send():status_code()
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([200]);
    const req = server.seen[0] as Seen;
    const ct = req.headers['content-type'] as string;
    expect(ct).toMatch(/^multipart\/form-data; boundary=/);
    // Parse it back with the web platform's own multipart parser.
    const form = await new Response(req.body, { headers: { 'content-type': ct } }).formData();
    expect(form.get('note')).toBe('hello');
    const file = form.get('upload') as File;
    expect(file.name).toBe('a.bin');
    expect(Buffer.from(await file.arrayBuffer()).toString('latin1')).toBe('file\x00bytes');
  });

  it('builds URLs with query parameters', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function()
        return kumo.http.build_url('http://example.com/path', { q = 'a b' }),
          kumo.http.build_url('http://example.com/p?x=1#frag', { y = '2' }),
          kumo.http.build_url('http://example.com/p', {})
      end)
    `);
    expect(await call(vm, 'test')).toEqual([
      'http://example.com/path?q=a+b',
      'http://example.com/p?x=1&y=2#frag',
      'http://example.com/p?',
    ]);
  });

  it('follows a 302 after a POST as a GET without the body', async () => {
    server.reply = (req, res) => {
      if (req.url === '/old') {
        res.writeHead(302, { location: '/new' });
        res.end();
      } else {
        res.writeHead(200);
        res.end(`landed ${req.method}`);
      }
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        local resp = client:post(url .. '/old'):body('data'):send()
        return resp:status_code(), resp:text()
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([200, 'landed GET']);
    expect(server.seen.map((s) => `${s.method} ${s.url} ${s.body.length}`)).toEqual(['POST /old 4', 'GET /new 0']);
  });
  it('repeats the method and body on a 307, and stops after 10 redirects', async () => {
    server.reply = (req, res) => {
      if (req.url === '/temp') {
        res.writeHead(307, { location: '/final' });
        res.end();
      } else if (req.url.startsWith('/loop')) {
        res.writeHead(302, { location: `/loop${req.url.length}` });
        res.end();
      } else {
        res.writeHead(200);
        res.end(`${req.method} ${req.body.toString('utf8')}`);
      }
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        local text = client:post(url .. '/temp'):body('payload'):send():text()
        local ok, err = pcall(function() return client:get(url .. '/loop'):send() end)
        return text, ok, err
      end)
    `);
    const [text, ok, err] = await call(vm, 'test', server.url);
    expect(text).toBe('POST payload');
    expect(ok).toBe(false);
    expect(err).toMatch(/error following redirect for url \(http:\/\/127\.0\.0\.1:\d+\/loop\d+\): too many redirects$/);
    expect(server.seen.filter((s) => s.url.startsWith('/loop'))).toHaveLength(11);
  });
});

describe('kumo.http responses', () => {
  it('does not raise for a 500, and reports its status', async () => {
    server.reply = (_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('boom');
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local resp = kumo.http.build_client({}):post(url):body('x'):send()
        return resp:status_code(), resp:status_reason(), resp:status_is_success(),
          resp:status_is_server_error(), resp:status_is_client_error(), resp:text()
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([500, 'Internal Server Error', false, true, false, 'boom']);
  });

  it('has no status_reason for 299, which still counts as success', async () => {
    server.reply = (_req, res) => {
      res.writeHead(299);
      res.end();
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local resp = kumo.http.build_client({}):get(url):send()
        return resp:status_code(), resp:status_reason() == nil, resp:status_is_success()
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([299, true, true]);
  });

  it('keeps status_* working after text(), while headers() and a second read fail', async () => {
    server.reply = (_req, res) => {
      res.writeHead(201, { 'content-type': 'text/plain' });
      res.end('created');
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local resp = kumo.http.build_client({}):post(url):send()
        local text = resp:text()
        local ok_h, err_h = pcall(function() return resp:headers() end)
        local ok_l, err_l = pcall(function() return resp:content_length() end)
        local ok_t, err_t = pcall(function() return resp:text() end)
        local ok_b, err_b = pcall(function() return resp:bytes() end)
        return text, resp:status_is_success(), resp:status_code(), ok_h, err_h, ok_l, err_l, ok_t, err_t, ok_b, err_b
      end)
    `);
    const v = await call(vm, 'test', server.url);
    expect(v.slice(0, 3)).toEqual(['created', true, 201]);
    for (let i = 3; i < 11; i += 2) {
      expect(v[i]).toBe(false);
      expect(v[i + 1]).toMatch(/init\.lua:\d+: broken response wrapper$/);
    }
  });

  it('exposes headers case-insensitively, pairs in lowercase, and content_length', async () => {
    server.reply = (_req, res) => {
      res.writeHead(200, [['Content-Type', 'application/json'], ['X-Custom', 'One'], ['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2'], ['Content-Length', '11']]);
      res.end('{"ok":true}');
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local resp = kumo.http.build_client({}):get(url):send()
        local h = resp:headers()
        local seen = {}
        for k, v in pairs(h) do
          if k == 'x-custom' or k == 'set-cookie' then table.insert(seen, k .. '=' .. v) end
        end
        return h['X-CUSTOM'], h['content-type'], h['missing'] == nil, table.concat(seen, ','),
          resp:content_length(), resp:bytes()
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual(['One', 'application/json', true, 'x-custom=One,set-cookie=a=1,set-cookie=b=2', 11, '{"ok":true}']);
  });

  it('returns nil content_length for a chunked reply, and bytes() raw', async () => {
    server.reply = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(Buffer.from([0xff, 0x00]));
      res.end(Buffer.from([0xfe]));
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local resp = kumo.http.build_client({}):get(url):send()
        local cl = resp:content_length()
        local b = resp:bytes()
        return cl == nil, #b, b:byte(1), b:byte(2), b:byte(3)
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([true, 3, 0xff, 0x00, 0xfe]);
  });
});

describe('kumo.http errors', () => {
  it('refuses requests after client:close()', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        local first = client:post(url):send():status_code()
        client:close()
        local ok, err = pcall(function() return client:post(url) end)
        return first, ok, err
      end)
    `);
    const [first, ok, err] = await call(vm, 'test', server.url);
    expect(first).toBe(200);
    expect(ok).toBe(false);
    expect(err).toMatch(/init\.lua:\d+: client was closed$/);
  });

  it('raises a catchable error naming the URL when the connection is refused', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}/hook`;
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        local ok, err = pcall(function() return client:post(url):body('x'):send() end)
        return ok, err
      end)
      kumo.on('uncaught', function(url)
        return kumo.http.build_client({}):get(url):send()
      end)
    `);
    const [ok, err] = await call(vm, 'test', url);
    expect(ok).toBe(false);
    expect(err).toContain(`error sending request for url (${url})`);
    expect(err).toContain('ECONNREFUSED');
    expect(err).toMatch(/^.*init\.lua:\d+: /);
    const uncaught = await call(vm, 'uncaught', url).catch((e: unknown) => e);
    expect(uncaught).toBeInstanceOf(LuaError);
    expect((uncaught as LuaError).message).toContain(`error sending request for url (${url})`);
  });

  it('raises when timeout(0.2) expires against a server that never answers', async () => {
    server.reply = () => {
      /* never answer */
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client {}
        local ok, err = pcall(function() return client:post(url .. '/slow'):timeout(0.2):send() end)
        return ok, err
      end)
    `);
    const started = Date.now();
    const [ok, err] = await call(vm, 'test', server.url);
    const elapsed = Date.now() - started;
    expect(ok).toBe(false);
    expect(err).toMatch(/init\.lua:\d+: error sending request for url \(http:\/\/127\.0\.0\.1:\d+\/slow\): operation timed out$/);
    expect(server.seen).toHaveLength(1);
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(5000);
  });

  it('applies the client timeout option, given as a duration string', async () => {
    server.reply = () => {
      /* never answer */
    };
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local client = kumo.http.build_client { timeout = '250ms', pool_idle_timeout = '1 minute', connection_verbose = false, unknown_key = 1 }
        local ok, err = pcall(function() return client:get(url):send() end)
        return ok, err
      end)
    `);
    const [ok, err] = await call(vm, 'test', server.url);
    expect(ok).toBe(false);
    expect(err).toContain('operation timed out');
  });

  it('raises broken request builder on a second send', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function(url)
        local req = kumo.http.build_client({}):post(url):body('once')
        local first = req:send():status_code()
        local ok, err = pcall(function() return req:send() end)
        local ok2, err2 = pcall(function() return req:header('a', 'b') end)
        return first, ok, err, ok2, err2
      end)
    `);
    const [first, ok, err, ok2, err2] = await call(vm, 'test', server.url);
    expect(first).toBe(200);
    expect(ok).toBe(false);
    expect(err).toMatch(/init\.lua:\d+: broken request builder$/);
    expect(ok2).toBe(false);
    expect(err2).toMatch(/broken request builder$/);
    expect(server.seen).toHaveLength(1);
  });

  it('raises for an invalid URL and for a scheme other than http(s), at send', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function()
        local client = kumo.http.build_client {}
        local ok1, err1 = pcall(function() return client:get('not a url'):send() end)
        local ok2, err2 = pcall(function() return client:get('ftp://127.0.0.1/x'):send() end)
        return ok1, err1, ok2, err2
      end)
    `);
    const [ok1, err1, ok2, err2] = await call(vm, 'test');
    expect(ok1).toBe(false);
    expect(err1).toMatch(/error sending request for url \(not a url\): relative URL without a base$/);
    expect(ok2).toBe(false);
    expect(err2).toMatch(/error sending request for url \(ftp:\/\/127\.0\.0\.1\/x\): URL scheme is not allowed$/);
  });

  it('rejects bad build_client options with the field name', async () => {
    const { vm } = await loadPolicy(`
      kumo.on('test', function()
        local ok1, err1 = pcall(kumo.http.build_client, { timeout = 'soon' })
        local ok2, err2 = pcall(kumo.http.build_client, { user_agent = 42 })
        local ok3, err3 = pcall(kumo.http.build_client, { accept_invalid_certs = 'yes' })
        return ok1, err1, ok2, ok3, err3
      end)
    `);
    const [ok1, err1, ok2, ok3, err3] = await call(vm, 'test');
    expect(ok1).toBe(false);
    expect(err1).toContain('kumo.http.build_client: timeout:');
    expect(ok2).toBe(true); // a number is accepted as a string, as mlua converts it
    expect(ok3).toBe(false);
    expect(err3).toContain('accept_invalid_certs: expected a boolean, got string');
  });
});

describe('kumo.http connections', () => {
  it('returns the connection to the pool even when the policy never reads the body', async () => {
    server.reply = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(10_000));
    };
    const { vm } = await loadPolicy(`
      local client = kumo.http.build_client {}
      kumo.on('test', function(url)
        local codes = {}
        for i = 1, 20 do
          codes[i] = client:post(url):body('n'):send():status_code()
        end
        return table.concat(codes, ',')
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([Array(20).fill('200').join(',')]);
    expect(server.seen).toHaveLength(20);
    // A body left unread would keep its connection busy, so every send would
    // open a new one (20). undici reuses a freed socket one event-loop turn
    // after the reply ends, so a send that follows at once may open a second.
    expect(new Set(server.seen.map((s) => s.remotePort)).size).toBeLessThanOrEqual(2);
  });

  it('closeHttpClients(vm) closes the clients a policy left open', async () => {
    const { vm } = await loadPolicy(`
      local client = kumo.http.build_client {}
      kumo.on('test', function(url)
        local ok, err = pcall(function() return client:get(url):send():status_code() end)
        return ok, err
      end)
    `);
    expect(await call(vm, 'test', server.url)).toEqual([true, 200]);
    await closeHttpClients(vm);
    const [ok, err] = await call(vm, 'test', server.url);
    expect(ok).toBe(false);
    expect(err).toMatch(/client was closed$/);
  });

  it('runs 1,000 concurrent sends through the async bridge', async () => {
    server.reply = (req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`echo ${req.body.toString('utf8')}`);
      }, 50);
    };
    const { vm } = await loadPolicy(`
      local client = kumo.http.build_client {}
      kumo.on('test', function(url, i)
        local resp = client:post(url):header('Content-Type', 'text/plain'):body(tostring(i)):send()
        return resp:status_code(), resp:text()
      end)
    `);
    const n = 1000;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => call(vm, 'test', server.url, i)));
    expect(results).toHaveLength(n);
    results.forEach((r, i) => expect(r).toEqual([200, `echo ${i}`]));
    expect(server.seen).toHaveLength(n);
    expect(new Set(server.seen.map((s) => s.body.toString('utf8'))).size).toBe(n);
  });
});
