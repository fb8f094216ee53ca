/**
 * The template lexer: template data, `{{ }}` / `{% %}` delimiters (with their
 * whitespace control), `{# #}` comments, `{% raw %}` blocks and the tokens
 * inside blocks; and TokenStream, the token cursor the parsers read from.
 */
import type { Source } from './errors.js';

type TokType = 'data' | 'var_start' | 'var_end' | 'block_start' | 'block_end' | 'ident' | 'str' | 'num' | 'op' | 'eof';

export interface Token {
  t: TokType;
  /** ident name, operator text, string value or template data */
  v: string;
  n: number;
  pos: number;
}

const OPERATORS = ['**', '//', '==', '!=', '<=', '>=', '+', '-', '*', '/', '%', '~', '<', '>', '=', '.', ',', ':', '|', '(', ')', '[', ']', '{', '}'];

function unescapeString(src: Source, raw: string, pos: number): string {
  if (!raw.includes('\\')) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const d = raw[++i];
    switch (d) {
      case '"':
      case "'":
      case '\\':
      case '/':
        out += d;
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        const hex = raw.slice(i + 1, i + 5);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw src.syntaxError(pos, 'bad string escape');
        out += String.fromCharCode(parseInt(hex, 16));
        i += 4;
        break;
      }
      default:
        throw src.syntaxError(pos, 'bad string escape');
    }
  }
  return out;
}

export function tokenize(src: Source): Token[] {
  const s = src.text;
  const n = s.length;
  const toks: Token[] = [];
  let i = 0;
  let lstripNext = false;
  const push = (t: TokType, v: string, pos: number, num = 0): void => {
    toks.push({ t, v, n: num, pos });
  };
  const pushData = (text: string, pos: number, rstrip: boolean): void => {
    if (lstripNext) text = text.trimStart();
    if (rstrip) text = text.trimEnd();
    lstripNext = false;
    if (text !== '') push('data', text, pos);
  };

  while (i < n) {
    // the next `{{`, `{%` or `{#`
    let j = s.indexOf('{', i);
    while (j !== -1 && j + 1 < n && !'{%#'.includes(s[j + 1] as string)) j = s.indexOf('{', j + 1);
    if (j !== -1 && j + 1 >= n) j = -1;
    if (j === -1) {
      pushData(s.slice(i), i, false);
      break;
    }
    const kind = s[j + 1] as string;
    const ws = s[j + 2];
    pushData(s.slice(i, j), i, ws === '-');
    const start = j;
    i = j + 2;
    if (ws === '-' || ws === '+') i++;

    if (kind === '#') {
      const end = s.indexOf('#}', i);
      if (end === -1) throw src.syntaxError(start, 'unexpected end of comment');
      lstripNext = s[end - 1] === '-' && end - 1 >= i;
      i = end + 2;
      continue;
    }

    if (kind === '%') {
      const raw = /\s*raw\s*([-+]?)%\}/y;
      raw.lastIndex = i;
      const m = raw.exec(s);
      if (m) {
        const endRe = /\{%([-+]?)\s*endraw\s*([-+]?)%\}/g;
        endRe.lastIndex = raw.lastIndex;
        const e = endRe.exec(s);
        if (!e) throw src.syntaxError(start, 'unexpected end of raw block');
        lstripNext = m[1] === '-';
        pushData(s.slice(raw.lastIndex, e.index), raw.lastIndex, e[1] === '-');
        lstripNext = e[2] === '-';
        i = endRe.lastIndex;
        continue;
      }
    }

    const isVar = kind === '{';
    push(isVar ? 'var_start' : 'block_start', '', start);
    let depth = 0;
    for (;;) {
      while (i < n && /\s/.test(s[i] as string)) i++;
      if (i >= n) throw src.syntaxError(n, `unexpected end of input, expected end of ${isVar ? 'variable block' : 'block'}`);
      if (depth === 0) {
        const close = isVar ? '}}' : '%}';
        if ((s[i] === '-' || s[i] === '+') && s.startsWith(close, i + 1)) {
          lstripNext = s[i] === '-';
          push(isVar ? 'var_end' : 'block_end', '', i);
          i += 3;
          break;
        }
        if (s.startsWith(close, i)) {
          push(isVar ? 'var_end' : 'block_end', '', i);
          i += 2;
          break;
        }
      }
      const c = s[i] as string;
      const at = i;
      if (/[A-Za-z_]/.test(c)) {
        const re = /[A-Za-z_][A-Za-z0-9_]*/y;
        re.lastIndex = i;
        const m = re.exec(s) as RegExpExecArray;
        push('ident', m[0], at);
        i = re.lastIndex;
      } else if (/[0-9]/.test(c)) {
        const re = /[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][+-]?[0-9]+)?/y;
        re.lastIndex = i;
        const m = re.exec(s) as RegExpExecArray;
        push('num', m[0], at, Number(m[0].replaceAll('_', '')));
        i = re.lastIndex;
      } else if (c === '"' || c === "'") {
        let k = i + 1;
        while (k < n && s[k] !== c) k += s[k] === '\\' ? 2 : 1;
        if (k >= n) throw src.syntaxError(at, 'unexpected end of string');
        push('str', unescapeString(src, s.slice(i + 1, k), at), at);
        i = k + 1;
      } else {
        const op = OPERATORS.find((o) => s.startsWith(o, i));
        if (op === undefined) throw src.syntaxError(at, `unexpected character '${c}'`);
        if (op === '(' || op === '[' || op === '{') depth++;
        else if (op === ')' || op === ']' || op === '}') depth = Math.max(0, depth - 1);
        push('op', op, at);
        i += op.length;
      }
    }
  }
  push('eof', '', n);
  return toks;
}

function describeToken(tok: Token): string {
  switch (tok.t) {
    case 'eof':
      return 'end of input';
    case 'data':
      return 'template data';
    case 'var_start':
      return 'start of variable block';
    case 'var_end':
      return 'end of variable block';
    case 'block_start':
      return 'start of block';
    case 'block_end':
      return 'end of block';
    case 'ident':
      return `identifier \`${tok.v}\``;
    case 'str':
      return 'string';
    case 'num':
      return 'number';
    default:
      return `\`${tok.v}\``;
  }
}

export class TokenStream {
  private i = 0;

  constructor(
    protected readonly src: Source,
    private readonly toks: Token[],
  ) {}

  protected peek(offset = 0): Token {
    return this.toks[Math.min(this.i + offset, this.toks.length - 1)] as Token;
  }

  protected next(): Token {
    const t = this.peek();
    if (this.i < this.toks.length - 1) this.i++;
    return t;
  }

  protected fail(tok: Token, detail: string): never {
    throw this.src.syntaxError(tok.pos, detail);
  }

  protected unexpected(tok: Token, expected: string): never {
    this.fail(tok, `unexpected ${describeToken(tok)}, expected ${expected}`);
  }

  protected isOp(v: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t.t === 'op' && t.v === v;
  }

  protected isKw(v: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t.t === 'ident' && t.v === v;
  }

  protected expectOp(v: string): Token {
    const t = this.next();
    if (t.t !== 'op' || t.v !== v) this.unexpected(t, `\`${v}\``);
    return t;
  }

  protected expectKw(v: string): Token {
    const t = this.next();
    if (t.t !== 'ident' || t.v !== v) this.unexpected(t, `\`${v}\``);
    return t;
  }

  protected expect(type: TokType, what: string): Token {
    const t = this.next();
    if (t.t !== type) this.unexpected(t, what);
    return t;
  }

  protected ident(what = 'identifier'): string {
    const t = this.next();
    if (t.t !== 'ident') this.unexpected(t, what);
    return t.v;
  }
}
