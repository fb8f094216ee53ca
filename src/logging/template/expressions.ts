/**
 * Expression parsing. The parser compiles as it goes: each expression becomes
 * an Expr, a closure evaluated against the render-time Scope, so a compiled
 * template renders without walking a syntax tree.
 */
import { invalid } from './errors.js';
import { asNumber, binaryOp, getAttr, getItem, hasOwn, kindOf, type Obj, str, truthy } from './values.js';
import { type Callable, callMethod, FILTERS, type Kwargs, range, TESTS } from './filters.js';
import { type Token, TokenStream } from './lexer.js';

/** Render-time scope: locals, then the context, then globals. */
export class Scope {
  constructor(
    readonly vars: Obj,
    readonly parent: Scope | null,
  ) {}

  get(name: string): unknown {
    for (let sc: Scope | null = this; sc !== null; sc = sc.parent) {
      if (hasOwn(sc.vars, name)) return sc.vars[name];
    }
    return undefined;
  }
}

export type Expr = (sc: Scope) => unknown;

const RESERVED = new Set(['and', 'or', 'not', 'in', 'is', 'if', 'else']);

export class ExpressionParser extends TokenStream {
  parseExpr(): Expr {
    const value = this.parseOr();
    if (!this.isKw('if')) return value;
    this.next();
    const cond = this.parseOr();
    let otherwise: Expr | undefined;
    if (this.isKw('else')) {
      this.next();
      otherwise = this.parseExpr();
    }
    const els = otherwise;
    return (sc) => (truthy(cond(sc)) ? value(sc) : els ? els(sc) : undefined);
  }

  /** An expression without a trailing `if` (loop iterables and filters). */
  protected parseIfLess(): Expr {
    return this.parseOr();
  }

  private parseOr(): Expr {
    let left = this.parseAnd();
    while (this.isKw('or')) {
      this.next();
      const l = left;
      const r = this.parseAnd();
      left = (sc) => {
        const v = l(sc);
        return truthy(v) ? v : r(sc);
      };
    }
    return left;
  }

  private parseAnd(): Expr {
    let left = this.parseNot();
    while (this.isKw('and')) {
      this.next();
      const l = left;
      const r = this.parseNot();
      left = (sc) => {
        const v = l(sc);
        return truthy(v) ? r(sc) : v;
      };
    }
    return left;
  }

  private parseNot(): Expr {
    if (this.isKw('not')) {
      this.next();
      const e = this.parseNot();
      return (sc) => !truthy(e(sc));
    }
    return this.parseCompare();
  }

  private parseCompare(): Expr {
    let left = this.parseMath1();
    for (;;) {
      let op: string | undefined;
      const t = this.peek();
      if (t.t === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.v)) op = t.v;
      else if (this.isKw('in')) op = 'in';
      else if (this.isKw('not') && this.isKw('in', 1)) op = 'not in';
      if (op === undefined) return left;
      this.next();
      if (op === 'not in') this.next();
      left = binary(op, left, this.parseMath1());
    }
  }

  private parseMath1(): Expr {
    let left = this.parseConcat();
    while (this.isOp('+') || this.isOp('-')) {
      const op = this.next().v;
      left = binary(op, left, this.parseConcat());
    }
    return left;
  }

  private parseConcat(): Expr {
    let left = this.parseMath2();
    while (this.isOp('~')) {
      this.next();
      left = binary('~', left, this.parseMath2());
    }
    return left;
  }

  private parseMath2(): Expr {
    let left = this.parsePow();
    while (this.isOp('*') || this.isOp('/') || this.isOp('//') || this.isOp('%')) {
      const op = this.next().v;
      left = binary(op, left, this.parsePow());
    }
    return left;
  }

  private parsePow(): Expr {
    let left = this.parseUnary();
    while (this.isOp('**')) {
      this.next();
      left = binary('**', left, this.parseUnary());
    }
    return left;
  }

  private parseUnary(): Expr {
    if (this.isOp('-')) {
      this.next();
      const e = this.parseUnary();
      return (sc) => {
        const v = e(sc);
        const n = asNumber(v);
        if (n === undefined || typeof v === 'boolean') throw invalid(`cannot negate value of type ${kindOf(v)}`);
        return -n;
      };
    }
    if (this.isOp('+')) {
      this.next();
      return this.parseUnary();
    }
    return this.parseFilters(this.parsePostfix(this.parsePrimary()));
  }

  private parseArgs(): { args: Expr[]; kwargs: Array<[string, Expr]> } {
    this.expectOp('(');
    const args: Expr[] = [];
    const kwargs: Array<[string, Expr]> = [];
    while (!this.isOp(')')) {
      if (this.peek().t === 'ident' && this.isOp('=', 1)) {
        const name = this.next().v;
        this.next();
        kwargs.push([name, this.parseExpr()]);
      } else {
        if (kwargs.length > 0) this.fail(this.peek(), 'non-keyword argument after keyword argument');
        args.push(this.parseExpr());
      }
      if (!this.isOp(',')) break;
      this.next();
    }
    this.expectOp(')');
    return { args, kwargs };
  }

  private parseFilters(expr: Expr): Expr {
    for (;;) {
      if (this.isOp('|')) {
        this.next();
        const nameTok = this.expect('ident', 'filter name');
        const filter = FILTERS[nameTok.v];
        if (!filter || !hasOwn(FILTERS, nameTok.v)) this.fail(nameTok, `unknown filter \`${nameTok.v}\``);
        const call = this.isOp('(') ? this.parseArgs() : { args: [], kwargs: [] };
        this.checkArity(nameTok, 'filter', filter, call.args.length, call.kwargs);
        expr = applyCallable(filter, expr, call.args, call.kwargs);
      } else if (this.isKw('is')) {
        this.next();
        let negate = false;
        if (this.isKw('not')) {
          this.next();
          negate = true;
        }
        const nameTok = this.expect('ident', 'test name');
        const test = hasOwn(TESTS, nameTok.v) ? TESTS[nameTok.v] : undefined;
        if (!test) this.fail(nameTok, `unknown test \`${nameTok.v}\``);
        let call: { args: Expr[]; kwargs: Array<[string, Expr]> } = { args: [], kwargs: [] };
        if (this.isOp('(')) call = this.parseArgs();
        else if (test.min === 1 && this.startsPrimary()) call = { args: [this.parsePostfix(this.parsePrimary())], kwargs: [] };
        this.checkArity(nameTok, 'test', test, call.args.length, call.kwargs);
        const applied = applyCallable(test, expr, call.args, call.kwargs);
        expr = negate ? (sc) => !truthy(applied(sc)) : (sc) => truthy(applied(sc));
      } else {
        return expr;
      }
    }
  }

  private startsPrimary(): boolean {
    const t = this.peek();
    return t.t === 'str' || t.t === 'num' || (t.t === 'ident' && !['and', 'or', 'not', 'in', 'is', 'if', 'else'].includes(t.v)) || (t.t === 'op' && ['(', '['].includes(t.v));
  }

  private checkArity(tok: Token, what: string, c: Callable, n: number, kwargs: Array<[string, Expr]>): void {
    if (n < c.min) this.fail(tok, `missing argument: ${what} \`${tok.v}\` takes at least ${c.min} argument${c.min === 1 ? '' : 's'}`);
    if (n > c.max) this.fail(tok, `too many arguments: ${what} \`${tok.v}\` takes at most ${c.max} argument${c.max === 1 ? '' : 's'}`);
    for (const [k] of kwargs) {
      if (!c.kwargs?.includes(k)) this.fail(tok, `too many arguments: ${what} \`${tok.v}\` has no keyword argument \`${k}\``);
    }
  }

  private parsePostfix(expr: Expr): Expr {
    for (;;) {
      if (this.isOp('.')) {
        this.next();
        const t = this.next();
        if (t.t !== 'ident' && t.t !== 'num') this.unexpected(t, 'identifier');
        const name = t.t === 'num' ? t.v : t.v;
        if (t.t === 'ident' && this.isOp('(')) {
          const { args, kwargs } = this.parseArgs();
          if (kwargs.length > 0) this.fail(t, 'keyword arguments are not supported on methods');
          const obj = expr;
          expr = (sc) => {
            const target = obj(sc);
            return callMethod(target, name, args.map((a) => a(sc)));
          };
        } else {
          const obj = expr;
          expr = (sc) => getAttr(obj(sc), name);
        }
      } else if (this.isOp('[')) {
        const open = this.next();
        if (this.isOp(':')) this.fail(open, 'slicing is not supported');
        const key = this.parseExpr();
        if (this.isOp(':')) this.fail(this.peek(), 'slicing is not supported');
        this.expectOp(']');
        const obj = expr;
        expr = (sc) => getItem(obj(sc), key(sc));
      } else if (this.isOp('(')) {
        this.fail(this.peek(), 'only functions and methods can be called');
      } else {
        return expr;
      }
    }
  }

  private parsePrimary(): Expr {
    const t = this.next();
    switch (t.t) {
      case 'str': {
        let v = t.v;
        // adjacent string literals concatenate
        while (this.peek().t === 'str') v += this.next().v;
        const value = v;
        return () => value;
      }
      case 'num': {
        const value = t.n;
        return () => value;
      }
      case 'ident': {
        switch (t.v) {
          case 'true':
          case 'True':
            return () => true;
          case 'false':
          case 'False':
            return () => false;
          case 'none':
          case 'None':
            return () => null;
        }
        if (RESERVED.has(t.v)) this.unexpected(t, 'expression');
        if (this.isOp('(')) {
          const { args, kwargs } = this.parseArgs();
          if (t.v === 'range') {
            if (args.length < 1 || args.length > 3 || kwargs.length > 0) this.fail(t, 'range takes 1 to 3 arguments');
            return (sc) => range(args.map((a) => a(sc)));
          }
          if (t.v === 'dict') {
            if (args.length > 0) this.fail(t, 'dict takes keyword arguments only');
            return (sc) => Object.fromEntries(kwargs.map(([k, e]) => [k, e(sc)]));
          }
          this.fail(t, `unknown function ${t.v}`);
        }
        const name = t.v;
        return (sc) => sc.get(name);
      }
      case 'op':
        if (t.v === '(') {
          if (this.isOp(')')) {
            this.next();
            return () => [];
          }
          const first = this.parseExpr();
          if (this.isOp(')')) {
            this.next();
            return first;
          }
          const items = [first];
          while (this.isOp(',')) {
            this.next();
            if (this.isOp(')')) break;
            items.push(this.parseExpr());
          }
          this.expectOp(')');
          return (sc) => items.map((e) => e(sc));
        }
        if (t.v === '[') {
          const items: Expr[] = [];
          while (!this.isOp(']')) {
            items.push(this.parseExpr());
            if (!this.isOp(',')) break;
            this.next();
          }
          this.expectOp(']');
          return (sc) => items.map((e) => e(sc));
        }
        if (t.v === '{') {
          const entries: Array<[Expr, Expr]> = [];
          while (!this.isOp('}')) {
            const k = this.parseExpr();
            this.expectOp(':');
            entries.push([k, this.parseExpr()]);
            if (!this.isOp(',')) break;
            this.next();
          }
          this.expectOp('}');
          return (sc) => {
            const o: Obj = {};
            for (const [k, v] of entries) o[str(k(sc))] = v(sc);
            return o;
          };
        }
        return this.unexpected(t, 'expression');
      default:
        return this.unexpected(t, 'expression');
    }
  }
}

function binary(op: string, l: Expr, r: Expr): Expr {
  return (sc) => binaryOp(op, l(sc), r(sc));
}

function applyCallable(c: Callable, value: Expr, args: Expr[], kwargs: Array<[string, Expr]>): Expr {
  if (args.length === 0 && kwargs.length === 0) return (sc) => c.fn(value(sc), [], {});
  return (sc) => {
    const kw: Kwargs = {};
    for (const [k, e] of kwargs) kw[k] = e(sc);
    return c.fn(
      value(sc),
      args.map((a) => a(sc)),
      kw,
    );
  };
}
