/**
 * The template engine's errors (template.ts re-exports the public ones):
 * TemplateSyntaxError from compileTemplate, TemplateRenderError while
 * rendering, and OpError, which value operations throw without a position.
 * Source maps an offset in the template to the line and column they report.
 */

export class TemplateError extends Error {
  constructor(
    /** `syntax error`, `undefined value`, `invalid operation`, `unknown method`. */
    readonly kind: string,
    readonly detail: string,
    /** 1-based. */
    readonly line: number,
    /** 1-based; 0 when unknown. */
    readonly column: number,
    readonly templateName: string | undefined,
    sourceLine: string,
  ) {
    const where = templateName !== undefined ? `in template '${templateName}' ` : 'in template ';
    const col = column > 0 ? `, column ${column}` : '';
    super(`${kind}: ${detail} (${where}line ${line}${col}: '${sourceLine.slice(0, 1024)}')`);
    this.name = 'TemplateError';
  }
}

/** A template that does not parse; raised by compileTemplate. */
export class TemplateSyntaxError extends TemplateError {
  constructor(detail: string, line: number, column: number, templateName: string | undefined, sourceLine: string) {
    super('syntax error', detail, line, column, templateName, sourceLine);
    this.name = 'TemplateSyntaxError';
  }
}

/** A failure while rendering (for example `{{ missing.attr }}`). */
export class TemplateRenderError extends TemplateError {
  constructor(kind: string, detail: string, line: number, column: number, templateName: string | undefined, sourceLine: string) {
    super(kind, detail, line, column, templateName, sourceLine);
    this.name = 'TemplateRenderError';
  }
}

/** Thrown by value operations; converted to TemplateRenderError with a position. */
export class OpError extends Error {
  constructor(
    readonly kind: string,
    detail: string,
  ) {
    super(detail);
  }
}

export const undefinedError = (): OpError => new OpError('undefined value', 'undefined value');
export const invalid = (detail: string): OpError => new OpError('invalid operation', detail);

export class Source {
  constructor(
    readonly text: string,
    readonly name: string | undefined,
  ) {}

  position(pos: number): { line: number; column: number; lineText: string } {
    let line = 1;
    let start = 0;
    for (let i = 0; i < pos && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === 10) {
        line++;
        start = i + 1;
      }
    }
    const end = this.text.indexOf('\n', start);
    const lineText = this.text.slice(start, end === -1 ? this.text.length : end).replace(/\r$/, '');
    return { line, column: pos - start + 1, lineText };
  }

  syntaxError(pos: number, detail: string): TemplateSyntaxError {
    const p = this.position(pos);
    return new TemplateSyntaxError(detail, p.line, p.column, this.name, p.lineText);
  }

  renderError(pos: number, err: unknown): unknown {
    if (err instanceof TemplateError) return err;
    const p = this.position(pos);
    if (err instanceof OpError) return new TemplateRenderError(err.kind, err.message, p.line, p.column, this.name, p.lineText);
    if (err instanceof RangeError) return new TemplateRenderError('invalid operation', err.message, p.line, p.column, this.name, p.lineText);
    return err;
  }
}
