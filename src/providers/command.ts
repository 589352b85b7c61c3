// `runledger providers check FILE` checks a job provider definition and prints what it understood
// (exit 0), or names each field that is wrong (exit 2); `runledger providers schema` prints the JSON
// Schema definitions are checked against.
import { definitionFile } from './configure.js';
import { DefinitionError, definitionJsonSchema, describeDefinition, loadDefinition } from './definition.js';

const USAGE = `Usage:
  runledger providers check FILE   check a provider definition (JSON; or a shipped name: replicate, fal)
                                   and print what it understood; exit 2 naming each wrong field
  runledger providers schema       print the JSON Schema of provider definitions
`;

export function providersCommand(args: string[], out = process.stdout, err = process.stderr): number {
  const [verb, ...rest] = args;
  if (verb === 'schema' && rest.length === 0) {
    out.write(JSON.stringify(definitionJsonSchema(), null, 2) + '\n');
    return 0;
  }
  if (verb === 'check' && rest.length === 1) {
    const file = definitionFile(rest[0]!);
    try {
      out.write(`${file}: a valid provider definition\n${describeDefinition(loadDefinition(file))}`);
      return 0;
    } catch (e) {
      if (!(e instanceof DefinitionError)) throw e;
      err.write(`runledger: ${e.source} is not a valid provider definition:\n${e.problems.map((p) => `  ${p.field}: ${p.message}\n`).join('')}`);
      return 2;
    }
  }
  if (verb === '--help' || verb === '-h') {
    out.write(USAGE);
    return 0;
  }
  err.write(`runledger: ${verb === undefined ? 'providers takes a subcommand' : `unknown: providers ${args.join(' ')}`}\n${USAGE}`);
  return 2;
}
