/**
 * Every error sluice raises on purpose is a SluiceError with a stable `code`.
 * Callers and tests match on the code; the message says what went wrong and,
 * where there is one, what to do about it. The catalogue below is the single
 * list of codes (the README's error table mirrors it; a unit test checks that).
 */
export const ERROR_CODES = {
  SLUICE_ERR_LUA: 'a Lua error reached the host',
  SLUICE_ERR_LUA_SYNTAX: 'a policy file does not parse',
  SLUICE_ERR_LUA_RUNAWAY: 'a Lua handler ran too many instructions without yielding',
  SLUICE_ERR_LUA_REJECT: 'kumo.reject was called and not caught',
  SLUICE_ERR_LUA_BAD_RETURN: 'a Lua handler returned a value of the wrong type',
  SLUICE_ERR_POLICY_LOAD: 'the policy failed to load (top level, pre_init or init)',
  SLUICE_ERR_INVALID_OPTION: 'an option failed validation',
  SLUICE_ERR_INVALID_ARGUMENT: 'a command-line argument failed validation',
  SLUICE_ERR_NO_HANDLER: 'an event that needs a handler has none',
  SLUICE_ERR_SPOOL_LOCKED: 'another sluice process is using this data directory',
  SLUICE_ERR_SPOOL: 'the spool could not be opened or written',
  SLUICE_ERR_SHUTTING_DOWN: 'sluice is shutting down and takes no new work',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SluiceError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SluiceError';
    this.code = code;
  }
}

/**
 * A Lua error that reached the host. `message` is the Lua error text, which
 * normally starts with `file:line:`; `traceback` is the Lua stack at the point
 * of the error.
 */
export class LuaError extends SluiceError {
  readonly traceback: string;
  constructor(message: string, traceback: string, code: ErrorCode = 'SLUICE_ERR_LUA') {
    super(code, message);
    this.name = 'LuaError';
    this.traceback = traceback;
  }
}

/** Raised by `kumo.reject(code, message)` and carried up to the host intact. */
export class RejectError extends SluiceError {
  readonly smtpCode: number;
  readonly response: string;
  readonly traceback: string;
  constructor(smtpCode: number, response: string, traceback = '') {
    super('SLUICE_ERR_LUA_REJECT', `${smtpCode} ${response}`);
    this.name = 'RejectError';
    this.smtpCode = smtpCode;
    this.response = response;
    this.traceback = traceback;
  }
}
