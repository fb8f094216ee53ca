/**
 * Statement parsing: template data, `{{ expr }}`, `{% if %}`, `{% for %}` and
 * `{% set %}`. Like expressions (expressions.ts), each statement compiles to
 * a closure (Stmt) that appends its output while rendering.
 */
import { invalid } from './errors.js';
import { displayValue, iterate, kindOf, type Obj, truthy } from './values.js';
import type { Token } from './lexer.js';
import { type Expr, ExpressionParser, Scope } from './expressions.js';

export interface Out {
  s: string;
}

type Stmt = (sc: Scope, out: Out) => void;

export class TemplateParser extends ExpressionParser {
  parseTemplate(): Stmt {
    const { body, end } = this.parseBody([]);
    if (end) this.fail(end, `unexpected \`${end.v}\``);
    return body;
  }

  /** Parse until one of `ends` opens a block; leaves the parser after the keyword. */
  private parseBody(ends: readonly string[]): { body: Stmt; end?: Token } {
    const stmts: Stmt[] = [];
    for (;;) {
      const tok = this.next();
      if (tok.t === 'eof') {
        if (ends.length > 0) this.fail(tok, `unexpected end of input, expected ${ends.map((e) => `\`${e}\``).join(' or ')}`);
        return { body: seq(stmts) };
      }
      if (tok.t === 'data') {
        const text = tok.v;
        stmts.push((_sc, out) => {
          out.s += text;
        });
      } else if (tok.t === 'var_start') {
        const expr = this.parseExpr();
        this.expect('var_end', 'end of variable block');
        const src = this.src;
        const pos = tok.pos;
        stmts.push((sc, out) => {
          try {
            out.s += displayValue(expr(sc));
          } catch (err) {
            throw src.renderError(pos, err);
          }
        });
      } else if (tok.t === 'block_start') {
        const kwTok = this.peek();
        if (kwTok.t !== 'ident') this.unexpected(kwTok, 'statement');
        if (ends.includes(kwTok.v)) {
          this.next();
          return { body: seq(stmts), end: kwTok };
        }
        this.next();
        switch (kwTok.v) {
          case 'if':
            stmts.push(this.parseIf(tok));
            break;
          case 'for':
            stmts.push(this.parseFor(tok));
            break;
          case 'set':
            stmts.push(this.parseSet(tok));
            break;
          case 'elif':
          case 'else':
          case 'endif':
          case 'endfor':
          case 'endset':
          case 'endraw':
            this.fail(kwTok, `unexpected \`${kwTok.v}\``);
            break;
          default:
            this.fail(kwTok, `unknown statement ${kwTok.v}`);
        }
      } else {
        this.unexpected(tok, 'template data');
      }
    }
  }

  private guarded(pos: number, expr: Expr): Expr {
    const src = this.src;
    return (sc) => {
      try {
        return expr(sc);
      } catch (err) {
        throw src.renderError(pos, err);
      }
    };
  }

  private parseIf(start: Token): Stmt {
    const branches: Array<[Expr, Stmt]> = [];
    let otherwise: Stmt | undefined;
    let cond = this.guarded(start.pos, this.parseExpr());
    this.expect('block_end', 'end of block');
    for (;;) {
      const { body, end } = this.parseBody(['elif', 'else', 'endif']);
      branches.push([cond, body]);
      const endTok = end as Token;
      if (endTok.v === 'elif') {
        cond = this.guarded(endTok.pos, this.parseExpr());
        this.expect('block_end', 'end of block');
        continue;
      }
      this.expect('block_end', 'end of block');
      if (endTok.v === 'endif') break;
      otherwise = this.parseBody(['endif']).body;
      this.expect('block_end', 'end of block');
      break;
    }
    const els = otherwise;
    if (branches.length === 1 && els === undefined) {
      const [c, b] = branches[0] as [Expr, Stmt];
      return (sc, out) => {
        if (truthy(c(sc))) b(sc, out);
      };
    }
    return (sc, out) => {
      for (const [c, b] of branches) {
        if (truthy(c(sc))) {
          b(sc, out);
          return;
        }
      }
      if (els) els(sc, out);
    };
  }

  private parseTargets(): string[] {
    const paren = this.isOp('(');
    if (paren) this.next();
    const names = [this.ident('loop variable')];
    while (this.isOp(',')) {
      this.next();
      if (paren && this.isOp(')')) break;
      names.push(this.ident('loop variable'));
    }
    if (paren) this.expectOp(')');
    return names;
  }

  private parseFor(start: Token): Stmt {
    const targets = this.parseTargets();
    this.expectKw('in');
    const iter = this.guarded(start.pos, this.parseIfLess());
    let filter: Expr | undefined;
    if (this.isKw('if')) {
      this.next();
      filter = this.guarded(start.pos, this.parseIfLess());
    }
    if (this.isKw('recursive')) this.fail(this.peek(), 'recursive loops are not supported');
    this.expect('block_end', 'end of block');
    const { body, end } = this.parseBody(['else', 'endfor']);
    let otherwise: Stmt | undefined;
    this.expect('block_end', 'end of block');
    if ((end as Token).v === 'else') {
      otherwise = this.parseBody(['endfor']).body;
      this.expect('block_end', 'end of block');
    }
    const src = this.src;
    const bind = (vars: Obj, item: unknown): void => {
      if (targets.length === 1) {
        vars[targets[0] as string] = item;
        return;
      }
      const parts = Array.isArray(item) ? item : typeof item === 'string' ? [...item] : undefined;
      if (!parts || parts.length !== targets.length) {
        throw src.renderError(start.pos, invalid(`cannot unpack ${kindOf(item)} into ${targets.length} variables`));
      }
      targets.forEach((t, k) => {
        vars[t] = parts[k];
      });
    };
    return (sc, out) => {
      let items: unknown[];
      try {
        items = iterate(iter(sc));
      } catch (err) {
        throw src.renderError(start.pos, err);
      }
      if (filter) {
        const f = filter;
        items = items.filter((item) => {
          const vars: Obj = Object.create(null) as Obj;
          bind(vars, item);
          return truthy(f(new Scope(vars, sc)));
        });
      }
      if (items.length === 0) {
        if (otherwise) otherwise(sc, out);
        return;
      }
      const length = items.length;
      for (let k = 0; k < length; k++) {
        const vars: Obj = Object.create(null) as Obj;
        bind(vars, items[k]);
        vars.loop = {
          index: k + 1,
          index0: k,
          revindex: length - k,
          revindex0: length - k - 1,
          first: k === 0,
          last: k === length - 1,
          length,
          previtem: k > 0 ? items[k - 1] : undefined,
          nextitem: k < length - 1 ? items[k + 1] : undefined,
        };
        body(new Scope(vars, sc), out);
      }
    };
  }

  private parseSet(start: Token): Stmt {
    const targets = this.parseTargets();
    if (this.peek().t === 'block_end') {
      // block form: {% set x %}...{% endset %}
      if (targets.length !== 1) this.fail(this.peek(), 'a block set takes one variable');
      this.next();
      const { body } = this.parseBody(['endset']);
      this.expect('block_end', 'end of block');
      const name = targets[0] as string;
      return (sc) => {
        const buf: Out = { s: '' };
        body(sc, buf);
        sc.vars[name] = buf.s;
      };
    }
    this.expectOp('=');
    const expr = this.guarded(start.pos, this.parseExpr());
    this.expect('block_end', 'end of block');
    const src = this.src;
    return (sc) => {
      const v = expr(sc);
      if (targets.length === 1) {
        sc.vars[targets[0] as string] = v;
        return;
      }
      if (!Array.isArray(v) || v.length !== targets.length) throw src.renderError(start.pos, invalid(`cannot unpack ${kindOf(v)} into ${targets.length} variables`));
      targets.forEach((t, k) => {
        sc.vars[t] = v[k];
      });
    };
  }
}

function seq(stmts: Stmt[]): Stmt {
  if (stmts.length === 0) return () => {};
  if (stmts.length === 1) return stmts[0] as Stmt;
  return (sc, out) => {
    for (const s of stmts) s(sc, out);
  };
}
