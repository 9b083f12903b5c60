/**
 * Kconfig dependency expressions (`depends on`, `if`, `select ... if`), as
 * described in Documentation/kbuild/kconfig-language.rst:
 *
 *   expr := symbol | symbol '=' symbol | symbol '!=' symbol
 *         | symbol '<' | '>' | '<=' | '>=' symbol
 *         | '(' expr ')' | '!' expr | expr '&&' expr | expr '||' expr
 *
 * Values are tristates n=0, m=1, y=2: `&&` is the minimum, `||` the maximum
 * and `!` is 2 minus its operand. Evaluation here only serves to explain why
 * an option was dropped; Kconfig itself computes the configuration.
 */
import { QwamosError } from '../core/errors.js';
import { type KernelConfig, configValue } from './config-file.js';

export type Expression =
  | { kind: 'symbol'; name: string }
  /** A quoted constant such as "y" or "-fstack-protector". */
  | { kind: 'constant'; value: string }
  /** A `$(...)` macro such as `$(cc-option,-fstack-protector-strong)`. */
  | { kind: 'macro'; text: string }
  | { kind: 'not'; operand: Expression }
  | { kind: 'and' | 'or'; left: Expression; right: Expression }
  | { kind: 'compare'; operator: '=' | '!=' | '<' | '>' | '<=' | '>='; left: Expression; right: Expression };

export type Tristate = 0 | 1 | 2;

type Token = { type: 'operator'; text: string } | { type: 'operand'; expression: Expression };

const OPERATORS = ['&&', '||', '!=', '<=', '>=', '=', '<', '>', '!', '(', ')'];

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let position = 0;

  while (position < text.length) {
    const char = text[position]!;
    if (/\s/.test(char)) {
      position++;
      continue;
    }

    if (text.startsWith('$(', position)) {
      const end = matchingParenthesis(text, position + 1);
      tokens.push({ type: 'operand', expression: { kind: 'macro', text: text.slice(position, end + 1) } });
      position = end + 1;
      continue;
    }

    const operator = OPERATORS.find((candidate) => text.startsWith(candidate, position));
    if (operator) {
      tokens.push({ type: 'operator', text: operator });
      position += operator.length;
      continue;
    }

    if (char === '"' || char === "'") {
      const end = text.indexOf(char, position + 1);
      if (end < 0) throw new QwamosError('INPUT_INVALID', `unterminated string in Kconfig expression '${text}'`);
      tokens.push({ type: 'operand', expression: { kind: 'constant', value: text.slice(position + 1, end) } });
      position = end + 1;
      continue;
    }

    const word = /^[A-Za-z0-9_.\-+]+/.exec(text.slice(position));
    if (!word) throw new QwamosError('INPUT_INVALID', `unexpected '${char}' in Kconfig expression '${text}'`);
    tokens.push({ type: 'operand', expression: { kind: 'symbol', name: word[0] } });
    position += word[0].length;
  }

  return tokens;
}

function matchingParenthesis(text: string, open: number): number {
  let depth = 0;
  for (let index = open; index < text.length; index++) {
    if (text[index] === '(') depth++;
    if (text[index] === ')') depth--;
    if (depth === 0) return index;
  }
  throw new QwamosError('INPUT_INVALID', `unbalanced parentheses in Kconfig expression '${text}'`);
}

/** Parses a Kconfig expression. */
export function parseExpression(text: string): Expression {
  const tokens = tokenize(text);
  let position = 0;

  const peekOperator = (): string | undefined => {
    const token = tokens[position];
    return token?.type === 'operator' ? token.text : undefined;
  };
  const fail = (what: string): never => {
    throw new QwamosError('INPUT_INVALID', `invalid Kconfig expression '${text}': ${what}`);
  };

  const parseOr = (): Expression => {
    let left = parseAnd();
    while (peekOperator() === '||') {
      position++;
      left = { kind: 'or', left, right: parseAnd() };
    }
    return left;
  };

  const parseAnd = (): Expression => {
    let left = parseUnary();
    while (peekOperator() === '&&') {
      position++;
      left = { kind: 'and', left, right: parseUnary() };
    }
    return left;
  };

  const parseUnary = (): Expression => {
    const operator = peekOperator();
    if (operator === '!') {
      position++;
      return { kind: 'not', operand: parseUnary() };
    }
    if (operator === '(') {
      position++;
      const inner = parseOr();
      if (peekOperator() !== ')') fail('missing )');
      position++;
      return inner;
    }
    return parseComparison();
  };

  const parseComparison = (): Expression => {
    const left = parseOperand();
    const operator = peekOperator();
    if (operator === '=' || operator === '!=' || operator === '<' || operator === '>' || operator === '<=' || operator === '>=') {
      position++;
      return { kind: 'compare', operator, left, right: parseOperand() };
    }
    return left;
  };

  const parseOperand = (): Expression => {
    const token = tokens[position];
    if (token?.type !== 'operand') return fail(token ? `unexpected '${token.text}'` : 'unexpected end');
    position++;
    return token.expression;
  };

  const expression = parseOr();
  if (position !== tokens.length) fail('trailing text');
  return expression;
}

/** Symbols whose values decide an expression, without macros and constants. */
export function expressionSymbols(expression: Expression): string[] {
  const names = new Set<string>();
  const visit = (node: Expression): void => {
    if (node.kind === 'symbol' && !isConstantSymbol(node.name)) names.add(node.name);
    if (node.kind === 'not') visit(node.operand);
    if (node.kind === 'and' || node.kind === 'or' || node.kind === 'compare') {
      visit(node.left);
      visit(node.right);
    }
  };
  visit(expression);
  return [...names];
}

/** y, m, n and numbers are constants, not symbol references. */
function isConstantSymbol(name: string): boolean {
  return name === 'y' || name === 'm' || name === 'n' || /^-?[0-9]/.test(name);
}

/** Returns the string value of an operand: a symbol's value, `n` when unset. */
function operandValue(node: Expression, config: KernelConfig): string {
  if (node.kind === 'constant') return node.value;
  if (node.kind === 'symbol') {
    if (isConstantSymbol(node.name)) return node.name;
    return configValue(config, node.name).replace(/^"(.*)"$/, '$1');
  }
  return node.kind === 'macro' ? 'y' : String(evaluate(node, config));
}

function tristateOf(value: string, config: KernelConfig): Tristate {
  if (value === 'y') return 2;
  // `m` counts as n when loadable modules are off, as in Kconfig.
  if (value === 'm') return configValue(config, 'MODULES') === 'y' ? 1 : 0;
  return 0;
}

function compare(operator: string, left: string, right: string): boolean {
  const number = (value: string): number | undefined => (/^-?(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(value) ? Number(value) : undefined);
  const leftNumber = number(left);
  const rightNumber = number(right);
  const order = leftNumber !== undefined && rightNumber !== undefined ? Math.sign(leftNumber - rightNumber) : left.localeCompare(right);

  switch (operator) {
    case '=': return order === 0;
    case '!=': return order !== 0;
    case '<': return order < 0;
    case '>': return order > 0;
    case '<=': return order <= 0;
    default: return order >= 0;
  }
}

/**
 * Evaluates an expression against a final config. A `$(...)` macro counts
 * as y because its result (a compiler test) is not visible in `.config`.
 */
export function evaluate(expression: Expression, config: KernelConfig): Tristate {
  switch (expression.kind) {
    case 'symbol':
    case 'constant':
      return tristateOf(operandValue(expression, config), config);
    case 'macro':
      return 2;
    case 'not':
      return (2 - evaluate(expression.operand, config)) as Tristate;
    case 'and':
      return Math.min(evaluate(expression.left, config), evaluate(expression.right, config)) as Tristate;
    case 'or':
      return Math.max(evaluate(expression.left, config), evaluate(expression.right, config)) as Tristate;
    case 'compare':
      return compare(expression.operator, operandValue(expression.left, config), operandValue(expression.right, config)) ? 2 : 0;
  }
}

/**
 * Returns the symbols that keep `expression` below `needed`: for `A && B`
 * the operands that fall short, for `A || B` the symbols of every operand,
 * for `!A` the symbols of A (which are on).
 */
export function blockingSymbols(expression: Expression, config: KernelConfig, needed: Tristate): string[] {
  if (evaluate(expression, config) >= needed) return [];

  switch (expression.kind) {
    case 'and':
      return unique([...blockingSymbols(expression.left, config, needed), ...blockingSymbols(expression.right, config, needed)]);
    case 'or':
    case 'not':
    case 'compare':
    case 'symbol':
      return expressionSymbols(expression);
    default:
      return [];
  }
}

function unique(names: string[]): string[] {
  return [...new Set(names)];
}
