// `runledger --help` and `runledger <command> --help`, written from the table: usage, about, and each
// group of flags with its range, environment variable and default, wrapped to 100 columns.
import type { Flag } from './flag.js';
import { COMMAND_NAMES, COMMANDS, defaultOf, FLAGS, type Command, type CommandName, type FlagName } from './table.js';

const WIDTH = 100;
const INDENT = 26;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

function paragraphs(text: string): string {
  return text
    .split('\n\n')
    .map((p) => wrap(p, WIDTH).join('\n'))
    .join('\n\n');
}

function flagLine(command: CommandName, name: FlagName, env: NodeJS.ProcessEnv): string {
  const flag: Flag = FLAGS[name];
  const head = `  ${flag.short === undefined ? '' : `-${flag.short}, `}--${name}${flag.arg === undefined ? '' : ` ${flag.arg}`}`;
  const notes: string[] = [];
  if (flag.range !== undefined) notes.push(`${flag.range[0]}–${flag.range[1]}`);
  if (flag.env !== undefined) notes.push(`env ${flag.env}`);
  const value = defaultOf(command, name, env) ?? flag.shown;
  if (value !== undefined) notes.push(`default: ${value}`);
  const text = notes.length === 0 ? flag.help : `${flag.help} (${notes.join('; ')})`;
  const body = wrap(text, WIDTH - INDENT);
  const first = head.length < INDENT ? head.padEnd(INDENT) + body[0] : `${head}\n${' '.repeat(INDENT)}${body[0]}`;
  return [first, ...body.slice(1).map((l) => ' '.repeat(INDENT) + l)].join('\n');
}

function commandBody(command: CommandName, env: NodeJS.ProcessEnv): string {
  const spec: Command = COMMANDS[command];
  const parts = [`Usage:\n${spec.usage.map((u) => `  runledger ${u}`).join('\n')}`];
  if (spec.about !== undefined) parts.push(paragraphs(spec.about));
  for (const group of spec.groups)
    parts.push(`${group.title}:\n${group.flags.map((f) => flagLine(command, f, env)).join('\n')}`);
  if (spec.after !== undefined) parts.push(paragraphs(spec.after));
  return parts.join('\n\n') + '\n';
}

/** `runledger <command> --help`; with no command, the list of commands and then serve's flags. */
export function helpText(command: CommandName | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (command !== undefined) {
    return `runledger ${COMMANDS[command].words.join(' ')} — ${COMMANDS[command].summary}\n\n${commandBody(command, env)}`;
  }
  const list = COMMAND_NAMES.map((name) => {
    const head = `  runledger ${COMMANDS[name].words.join(' ')}`.padEnd(INDENT);
    return wrap(COMMANDS[name].summary, WIDTH - INDENT)
      .map((line, i) => (i === 0 ? head : ' '.repeat(INDENT)) + line)
      .join('\n');
  });
  return (
    'runledger — an MCP server that makes generative tool calls safe to retry, and a fence in front of any MCP server\n\n' +
    `Commands:\n${list.join('\n')}\n\n` +
    'Each command takes flags of its own: runledger <command> --help lists them (runledger proxy --help,\n' +
    'runledger runs list --help, runledger record --help, runledger replay --help, ...).\n\n' +
    commandBody('serve', env)
  );
}
