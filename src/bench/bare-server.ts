// The round-trip baseline of `runledger bench`: a bare SDK server over stdio with one no-op tool.
// Run as a child process by stdio-bench.ts; nothing but protocol messages reaches stdout.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

const server = new McpServer({ name: 'runledger-bench-bare', version: '0.0.0' });
server.registerTool('noop', { description: 'Does nothing.' }, async () => ({ content: [{ type: 'text', text: 'ok' }] }));
// The client closing our stdin ends the session, as it does for the real server.
process.stdin.once('end', () => process.exit(0));
await server.connect(new StdioServerTransport());
