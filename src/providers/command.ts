// `runledger providers check FILE` checks a job provider definition and prints what it understood
// (exit 0), or names each field that is wrong (exit 2); `runledger providers schema` prints the JSON
// Schema definitions are checked against. Their flags and help are in the command table.
import { definitionFile } from './configure.js';
import { DefinitionError, definitionJsonSchema, describeDefinition, loadDefinition } from './definition.js';

export function providersCheck(name: string, out = process.stdout, err = process.stderr): number {
  const file = definitionFile(name);
  try {
    out.write(`${file}: a valid provider definition\n${describeDefinition(loadDefinition(file))}`);
    return 0;
  } catch (e) {
    if (!(e instanceof DefinitionError)) throw e;
    err.write(
      `runledger: ${e.source} is not a valid provider definition:\n${e.problems.map((p) => `  ${p.field}: ${p.message}\n`).join('')}`,
    );
    return 2;
  }
}

export function providersSchema(out = process.stdout): number {
  out.write(JSON.stringify(definitionJsonSchema(), null, 2) + '\n');
  return 0;
}
