/**
 * An index of the Kconfig symbols of one kernel source tree and
 * architecture: where each symbol is defined, its prompt, the `depends on`
 * lines of its own and of the enclosing `if`, `menu` and `choice` blocks,
 * and which symbols `select` or `imply` it.
 *
 * The indexer walks the files from `<sourceRoot>/Kconfig` and follows
 * `source`, `osource`, `rsource` and `orsource` lines, expanding `$(SRCARCH)`
 * and `$SRCARCH`-style variables. It reads only what is needed to explain
 * why Kconfig dropped an option; it does not compute configurations.
 */
import { access, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { QwamosError } from '../core/errors.js';

export type ConditionKind = 'depends on' | 'if' | 'menu depends on' | 'menu visible if' | 'choice depends on' | 'prompt if';

/** One condition that must hold for a symbol to be settable. */
export interface KconfigCondition {
  kind: ConditionKind;
  expression: string;
  /** File path relative to the source root. */
  file: string;
  line: number;
}

export type KconfigType = 'bool' | 'tristate' | 'string' | 'int' | 'hex';

/** One `config` or `menuconfig` entry of a symbol. */
export interface KconfigDefinition {
  symbol: string;
  keyword: 'config' | 'menuconfig';
  type?: KconfigType;
  /** Prompt text; a symbol without a prompt cannot be set from `.config`. */
  prompt?: string;
  file: string;
  line: number;
  /** The entry's own `depends on` lines and the `if` of its prompt. */
  ownConditions: KconfigCondition[];
  /** Conditions of the enclosing blocks, innermost first. */
  enclosingConditions: KconfigCondition[];
  /** `default` lines as written, without the keyword. */
  defaults: string[];
  /** The `choice` block the symbol is a member of. */
  choice?: { file: string; line: number };
}

/** A `select` or `imply` line of one symbol that names another. */
export interface KconfigReverseDependency {
  kind: 'select' | 'imply';
  selector: string;
  target: string;
  condition?: string;
  file: string;
  line: number;
}

export interface KconfigIndex {
  sourceRoot: string;
  arch: string;
  /** Kconfig files read, relative to the source root, in reading order. */
  files: string[];
  definitions: Map<string, KconfigDefinition[]>;
  /** `select` and `imply` lines keyed by the symbol they name. */
  reverseDependencies: Map<string, KconfigReverseDependency[]>;
}

export interface IndexOptions {
  /** Kernel architecture name as in `arch/<name>`, such as `arm64`. */
  arch: string;
  /** Value of `$(ARCH)`; defaults to `arch`. */
  archVariable?: string;
  /** Extra variables for `$(NAME)` in `source` paths. */
  variables?: Record<string, string>;
}

type Frame =
  | { type: 'if'; conditions: KconfigCondition[]; file: string; line: number }
  | { type: 'menu'; conditions: KconfigCondition[]; file: string; line: number }
  | { type: 'choice'; conditions: KconfigCondition[]; file: string; line: number };

/** The entry that attribute lines (`depends on`, `select`...) belong to. */
type CurrentEntry =
  | { type: 'config'; definition: KconfigDefinition }
  | { type: 'block'; frame: Frame }
  | { type: 'comment' }
  | { type: 'none' };

interface ParserState {
  index: KconfigIndex;
  variables: Record<string, string>;
  frames: Frame[];
  current: CurrentEntry;
}

const TYPE_KEYWORDS: Record<string, KconfigType> = {
  bool: 'bool',
  boolean: 'bool',
  tristate: 'tristate',
  string: 'string',
  int: 'int',
  hex: 'hex',
  def_bool: 'bool',
  def_tristate: 'tristate',
};

/** Builds the index of `sourceRoot` for one architecture. */
export async function indexKconfig(sourceRoot: string, options: IndexOptions): Promise<KconfigIndex> {
  const state: ParserState = {
    index: { sourceRoot, arch: options.arch, files: [], definitions: new Map(), reverseDependencies: new Map() },
    variables: { SRCARCH: options.arch, ARCH: options.archVariable ?? options.arch, ...options.variables },
    frames: [],
    current: { type: 'none' },
  };

  await parseFile(state, 'Kconfig', { file: '(source root)', line: 0 });

  const open = state.frames.at(-1);
  if (open) {
    throw new QwamosError('INPUT_INVALID', `${open.file}:${open.line}: '${open.type}' block is never closed`);
  }
  return state.index;
}

/** Returns the definitions of `symbol`, empty when the tree does not define it. */
export function findDefinitions(index: KconfigIndex, symbol: string): KconfigDefinition[] {
  return index.definitions.get(symbol) ?? [];
}

/** Splits a file into logical lines: comments removed, `\` continuations joined. */
function logicalLines(text: string): { text: string; raw: string; line: number }[] {
  const physical = text.split(/\r?\n/);
  const result: { text: string; raw: string; line: number }[] = [];

  for (let index = 0; index < physical.length; index++) {
    const line = index + 1;
    let raw = physical[index]!;
    while (raw.endsWith('\\') && index + 1 < physical.length) {
      index++;
      raw = `${raw.slice(0, -1).trimEnd()} ${physical[index]!.trimStart()}`;
    }
    result.push({ text: stripComment(raw).trim(), raw, line });
  }
  return result;
}

function stripComment(line: string): string {
  let quote: string | undefined;
  for (let index = 0; index < line.length; index++) {
    const char = line[index]!;
    if (quote) {
      if (char === '\\') index++;
      else if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") {
      quote = char;
    } else if (char === '#') {
      return line.slice(0, index);
    }
  }
  return line;
}

/** Width of leading white space, with tabs to the next multiple of 8 as Kconfig counts them. */
function indentation(line: string): number {
  let width = 0;
  for (const char of line) {
    if (char === ' ') width++;
    else if (char === '\t') width = (Math.floor(width / 8) + 1) * 8;
    else break;
  }
  return width;
}

async function parseFile(state: ParserState, relativePath: string, sourcedFrom: { file: string; line: number }): Promise<void> {
  const absolutePath = path.join(state.index.sourceRoot, relativePath);
  const text = await readFile(absolutePath, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') {
      throw new QwamosError('INPUT_NOT_FOUND', `${sourcedFrom.file}:${sourcedFrom.line}: sourced Kconfig file ${relativePath} does not exist under ${state.index.sourceRoot}`);
    }
    throw error;
  });
  state.index.files.push(relativePath);

  const lines = logicalLines(text);
  for (let index = 0; index < lines.length; index++) {
    const { text: line, line: lineNumber } = lines[index]!;
    if (line === '') continue;

    const [keyword = '', ...restWords] = line.split(/\s+/);
    const rest = line.slice(keyword.length).trim();
    const where = { file: relativePath, line: lineNumber };

    if (keyword === 'help' || keyword === '---help---') {
      index = skipHelpText(lines, index);
      continue;
    }

    if (keyword === 'source' || keyword === 'osource' || keyword === 'rsource' || keyword === 'orsource') {
      await parseSource(state, keyword, rest, where);
      continue;
    }

    handleLine(state, keyword, rest, restWords, where);
  }
}

/** Returns the index of the last line of the help text that starts after `helpLine`. */
function skipHelpText(lines: { text: string; raw: string }[], helpLine: number): number {
  let helpIndent: number | undefined;
  let last = helpLine;

  for (let index = helpLine + 1; index < lines.length; index++) {
    const raw = lines[index]!.raw;
    if (raw.trim() === '') {
      last = index;
      continue;
    }
    const indent = indentation(raw);
    helpIndent ??= indent;
    if (indent < helpIndent || indent === 0) break;
    last = index;
  }
  return last;
}

async function parseSource(state: ParserState, keyword: string, argument: string, where: { file: string; line: number }): Promise<void> {
  const quoted = /^"([^"]*)"$/.exec(argument);
  const pattern = expandVariables(quoted ? quoted[1]! : argument, state.variables, where);
  const relativeToFile = keyword === 'rsource' || keyword === 'orsource';
  const optional = keyword === 'osource' || keyword === 'orsource';
  const fullPattern = relativeToFile ? path.posix.join(path.posix.dirname(where.file), pattern) : pattern;

  const matches = /[*?]/.test(fullPattern) ? await expandGlob(state.index.sourceRoot, fullPattern) : [fullPattern];
  if (matches.length === 0 && !optional) {
    throw new QwamosError('INPUT_NOT_FOUND', `${where.file}:${where.line}: no Kconfig file matches '${fullPattern}'`);
  }

  for (const match of matches) {
    if (optional && !(await exists(path.join(state.index.sourceRoot, match)))) continue;
    await parseFile(state, match, where);
  }
}

function expandVariables(text: string, variables: Record<string, string>, where: { file: string; line: number }): string {
  return text.replace(/\$\(([A-Za-z0-9_]+)\)|\$([A-Za-z0-9_]+)/g, (_match, parenthesized: string | undefined, bare: string | undefined) => {
    const name = (parenthesized ?? bare)!;
    const value = variables[name];
    if (value === undefined) {
      throw new QwamosError('INPUT_INVALID', `${where.file}:${where.line}: unknown variable '${name}' in a source path; known: ${Object.keys(variables).join(', ')}`);
    }
    return value;
  });
}

async function exists(filePath: string): Promise<boolean> {
  return access(filePath).then(() => true, () => false);
}

/** Expands `*` and `?` in the segments of a relative path, sorted like Kconfig's glob(). */
async function expandGlob(root: string, pattern: string): Promise<string[]> {
  let candidates = [''];
  for (const segment of pattern.split('/')) {
    const next: string[] = [];
    for (const base of candidates) {
      if (!/[*?]/.test(segment)) {
        next.push(path.posix.join(base, segment));
        continue;
      }
      const regex = new RegExp(`^${segment.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
      const entries = await readdir(path.join(root, base)).catch(() => [] as string[]);
      for (const entry of entries.sort()) if (regex.test(entry)) next.push(path.posix.join(base, entry));
    }
    candidates = next;
  }
  const found: string[] = [];
  for (const candidate of candidates) if (await exists(path.join(root, candidate))) found.push(candidate);
  return found;
}

function handleLine(state: ParserState, keyword: string, rest: string, restWords: string[], where: { file: string; line: number }): void {
  switch (keyword) {
    case 'config':
    case 'menuconfig':
      startDefinition(state, keyword, restWords[0] ?? '', where);
      return;
    case 'menu':
      openFrame(state, { type: 'menu', conditions: [], ...where });
      return;
    case 'choice':
      openFrame(state, { type: 'choice', conditions: [], ...where });
      return;
    case 'if':
      openFrame(state, { type: 'if', conditions: [{ kind: 'if', expression: rest, ...where }], ...where });
      state.current = { type: 'none' };
      return;
    case 'endmenu':
    case 'endchoice':
    case 'endif':
      closeFrame(state, keyword.slice(3) as Frame['type'], where);
      return;
    case 'comment':
      state.current = { type: 'comment' };
      return;
    case 'mainmenu':
      state.current = { type: 'none' };
      return;
    case 'depends':
      addDependency(state, rest.replace(/^on\s+/, ''), where);
      return;
    case 'visible':
      if (state.current.type === 'block' && state.current.frame.type === 'menu') {
        state.current.frame.conditions.push({ kind: 'menu visible if', expression: rest.replace(/^if\s+/, ''), ...where });
      }
      return;
    case 'select':
    case 'imply':
      addReverseDependency(state, keyword, rest, where);
      return;
    case 'default':
      if (state.current.type === 'config') state.current.definition.defaults.push(rest);
      return;
    case 'prompt':
      setPrompt(state, rest, where);
      return;
    default:
      if (keyword in TYPE_KEYWORDS) setType(state, keyword, rest, where);
  }
}

function startDefinition(state: ParserState, keyword: 'config' | 'menuconfig', symbol: string, where: { file: string; line: number }): void {
  if (!/^[A-Za-z0-9_]+$/.test(symbol)) {
    throw new QwamosError('INPUT_INVALID', `${where.file}:${where.line}: '${keyword}' needs a symbol name`);
  }

  const enclosingConditions = [...state.frames].reverse().flatMap((frame) => frame.conditions);
  const choice = [...state.frames].reverse().find((frame) => frame.type === 'choice');
  const definition: KconfigDefinition = {
    symbol,
    keyword,
    ...where,
    ownConditions: [],
    enclosingConditions,
    defaults: [],
    ...(choice ? { choice: { file: choice.file, line: choice.line } } : {}),
  };

  const list = state.index.definitions.get(symbol) ?? [];
  list.push(definition);
  state.index.definitions.set(symbol, list);
  state.current = { type: 'config', definition };
}

function openFrame(state: ParserState, frame: Frame): void {
  state.frames.push(frame);
  state.current = { type: 'block', frame };
}

function closeFrame(state: ParserState, type: Frame['type'], where: { file: string; line: number }): void {
  const frame = state.frames.pop();
  if (!frame || frame.type !== type) {
    const open = frame ? `the open block is '${frame.type}' from ${frame.file}:${frame.line}` : 'no block is open';
    throw new QwamosError('INPUT_INVALID', `${where.file}:${where.line}: 'end${type}' does not match: ${open}`);
  }
  state.current = { type: 'none' };
}

function addDependency(state: ParserState, expression: string, where: { file: string; line: number }): void {
  const current = state.current;
  if (current.type === 'config') {
    current.definition.ownConditions.push({ kind: 'depends on', expression, ...where });
  } else if (current.type === 'block' && current.frame.type !== 'if') {
    const kind: ConditionKind = current.frame.type === 'menu' ? 'menu depends on' : 'choice depends on';
    current.frame.conditions.push({ kind, expression, ...where });
  }
}

function addReverseDependency(state: ParserState, kind: 'select' | 'imply', rest: string, where: { file: string; line: number }): void {
  if (state.current.type !== 'config') return;
  const match = /^([A-Za-z0-9_]+)(?:\s+if\s+(.+))?$/.exec(rest);
  if (!match) return;

  const entry: KconfigReverseDependency = {
    kind,
    selector: state.current.definition.symbol,
    target: match[1]!,
    ...(match[2] ? { condition: match[2] } : {}),
    ...where,
  };
  const list = state.index.reverseDependencies.get(entry.target) ?? [];
  list.push(entry);
  state.index.reverseDependencies.set(entry.target, list);
}

/** Parses `"text" [if expr]` after a type keyword or `prompt`. */
function setPrompt(state: ParserState, text: string, where: { file: string; line: number }): void {
  if (state.current.type !== 'config') return;
  const match = /^(["'])((?:(?!\1)[^\\]|\\.)*)\1\s*(?:if\s+(.+))?$/.exec(text);
  if (!match) return;

  const definition = state.current.definition;
  definition.prompt = match[2]!;
  if (match[3]) definition.ownConditions.push({ kind: 'prompt if', expression: match[3], ...where });
}

function setType(state: ParserState, keyword: string, rest: string, where: { file: string; line: number }): void {
  if (state.current.type !== 'config') return;
  const definition = state.current.definition;
  definition.type = TYPE_KEYWORDS[keyword];

  if (keyword.startsWith('def_')) {
    definition.defaults.push(rest);
  } else if (rest !== '') {
    setPrompt(state, rest, where);
  }
}
