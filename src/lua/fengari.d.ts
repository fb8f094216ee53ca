// fengari ships no type definitions; this declares the parts sluice uses, loosely.
declare module 'fengari' {
  export type LuaState = any;
  export const lua: any;
  export const lauxlib: any;
  export const lualib: any;
  export function to_luastring(s: string, cache?: boolean): Uint8Array;
  export function to_jsstring(s: Uint8Array, from?: number, to?: number): string;
  export const luaconf: any;
}
declare module 'fengari/src/lobject.js' {
  const lobject: any;
  export default lobject;
}
declare module 'fengari/src/luaconf.js' {
  const luaconf: any;
  export default luaconf;
}
declare module 'fengari/src/lstring.js' {
  const lstring: any;
  export default lstring;
}
declare module 'fengari/src/lapi.js' {
  const lapi: any;
  export default lapi;
}
