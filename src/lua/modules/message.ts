/**
 * The Message object as Lua sees it: a userdata handle over the host's
 * Message, not a converted table (half the cost per delivery). Methods follow
 * KumoMTA's names; addresses are EnvelopeAddress userdata with `.user`,
 * `.domain`, `.email` and `tostring()`.
 */
import { lua } from 'fengari';
import type { LuaVM } from '../vm.js';
import { Message, domainOf, userOf } from '../../queue/message.js';
import { ConversionError, pushValue, toValue } from '../convert.js';
import { UserdataClass, checkString, raise } from '../host.js';
import { decodeString, pushString, toBytes, type LuaState } from '../lstr.js';
import { getHeaders, type Header } from '../../queue/headers.js';
import { pushJsonProxy } from '../json-proxy.js';

const classes = new WeakMap<object, { message: UserdataClass<Message>; address: UserdataClass<string> }>();

/** A Message ready to be passed to Lua as a handle (see convert.pushValue). */
export class MessageHandle {
  constructor(
    readonly vm: LuaVM,
    readonly message: Message,
  ) {}
  pushLua(L: LuaState): void {
    const c = classes.get(this.vm);
    if (!c) throw new Error('message class not installed');
    c.message.push(L, this.message);
  }
}

export function openMessage(vm: LuaVM, L: LuaState): void {
  const address = new UserdataClass<string>(L, 'EnvelopeAddress', {}, {
    __tostring: (L2) => {
      pushString(L2, address.check(L2, 1, 'tostring'));
      return 1;
    },
    __eq: (L2) => {
      lua.lua_pushboolean(L2, address.test(L2, 1) === address.test(L2, 2));
      return 1;
    },
  });
  address.setIndex(L, (L2) => {
    const email = address.check(L2, 1, 'EnvelopeAddress');
    const field = decodeString(lua.lua_tolstring(L2, 2) ?? new Uint8Array());
    if (field === 'email') pushString(L2, email);
    else if (field === 'user') pushString(L2, userOf(email));
    else if (field === 'domain') pushString(L2, domainOf(email));
    else lua.lua_pushnil(L2);
    return 1;
  });

  const pushAddress = (L2: LuaState, email: string) => address.push(L2, email);

  const message = new UserdataClass<Message>(L, 'Message', {
    id: (L2, m) => (pushString(L2, m.id), 1),
    get_data: (L2, m) => (pushString(L2, m.data), 1),
    set_data: (L2, m) => {
      m.data = Buffer.from(toBytes(L2, 2) ?? raise(L2, 'set_data: expected a string'));
      return 0;
    },
    get_meta: (L2, m) => {
      const v = m.getMeta(checkString(L2, 2, 'get_meta key'));
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)) pushJsonProxy(L2, v as Record<string, unknown>);
      else pushValue(L2, v);
      return 1;
    },
    set_meta: (L2, m) => {
      const k = checkString(L2, 2, 'set_meta key');
      try {
        m.setMeta(k, toValue(L2, 3));
      } catch (err) {
        if (err instanceof ConversionError) raise(L2, `set_meta '${k}': ${err.message}`);
        throw err;
      }
      return 0;
    },
    sender: (L2, m) => (pushAddress(L2, m.sender), 1),
    set_sender: (L2, m) => {
      m.sender = addressArg(L2, 2);
      return 0;
    },
    recipient: (L2, m) => {
      if (m.recipients.length === 0) lua.lua_pushnil(L2);
      else if (m.recipients.length === 1) pushAddress(L2, m.recipients[0] as string);
      else pushAddressList(L2, m.recipients);
      return 1;
    },
    recipient_list: (L2, m) => (pushAddressList(L2, m.recipients), 1),
    set_recipient: (L2, m) => {
      if (lua.lua_type(L2, 2) === lua.LUA_TTABLE) {
        const list: string[] = [];
        for (let i = 1; ; i++) {
          lua.lua_rawgeti(L2, 2, i);
          if (lua.lua_isnil(L2, -1)) {
            lua.lua_pop(L2, 1);
            break;
          }
          list.push(addressArg(L2, lua.lua_gettop(L2)));
          lua.lua_pop(L2, 1);
        }
        m.recipients = list;
      } else m.recipients = [addressArg(L2, 2)];
      return 0;
    },
    queue_name: (L2, m) => (pushString(L2, m.queueName()), 1),
    num_attempts: (L2, m) => (lua.lua_pushinteger(L2, m.numAttempts), 1),
    increment_num_attempts: (_L2, m) => {
      m.numAttempts++;
      return 0;
    },
    get_first_named_header_value: (L2, m) => {
      const name = checkString(L2, 2, 'header name').toLowerCase();
      const h = getHeaders(m).find((x) => x.name.toLowerCase() === name);
      if (h) pushString(L2, h.value);
      else lua.lua_pushnil(L2);
      return 1;
    },
    get_all_named_header_values: (L2, m) => {
      const name = checkString(L2, 2, 'header name').toLowerCase();
      pushValue(L2, getHeaders(m).filter((x) => x.name.toLowerCase() === name).map((x) => x.value));
      return 1;
    },
    get_all_headers: (L2, m) => {
      pushValue(L2, getHeaders(m).map((h: Header) => [h.name, h.value]));
      return 1;
    },
  }, {
    __tostring: (L2) => {
      pushString(L2, `Message(${message.check(L2, 1, 'tostring').id})`);
      return 1;
    },
  });

  function pushAddressList(L2: LuaState, list: readonly string[]): void {
    lua.lua_createtable(L2, list.length, 0);
    list.forEach((r, i) => {
      pushAddress(L2, r);
      lua.lua_rawseti(L2, -2, i + 1);
    });
  }

  function addressArg(L2: LuaState, idx: number): string {
    const a = address.test(L2, idx);
    if (a !== null) return a;
    return checkString(L2, idx, 'address');
  }

  classes.set(vm, { message, address });
}
