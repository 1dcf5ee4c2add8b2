// A small MCP server over stdio (newline-delimited JSON-RPC, no dependencies), shipped in the
// MCP test image next to the npm "everything" server: `pid` answers with its process id,
// `crash` exits in the middle of the call, `grow` adds the tool `extra` and says the tool
// list changed. Like many servers, it keeps running after its input closes (a timer holds it),
// so only the daemon ending it stops it.
import readline from 'node:readline';

let grown = false;
const send = (message) => process.stdout.write(JSON.stringify(message) + '\n');
const tool = (name, description) => ({ name, description, inputSchema: { type: 'object', properties: {} } });

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line);
  if (msg.id === undefined) return;
  const ok = (result) => send({ jsonrpc: '2.0', id: msg.id, result });
  switch (msg.method) {
    case 'initialize':
      return ok({
        protocolVersion: msg.params.protocolVersion,
        capabilities: { tools: { listChanged: true } },
        serverInfo: { name: 'flaky', version: '1.0.0' },
      });
    case 'ping':
      return ok({});
    case 'tools/list': {
      const tools = [tool('pid', 'its process id'), tool('crash', 'exits mid-call'), tool('grow', 'adds a tool')];
      if (grown) tools.push(tool('extra', 'added by grow'));
      return ok({ tools });
    }
    case 'tools/call':
      if (msg.params.name === 'crash') process.exit(3);
      if (msg.params.name === 'grow') {
        grown = true;
        ok({ content: [{ type: 'text', text: 'grown' }] });
        return send({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
      }
      return ok({ content: [{ type: 'text', text: `pid ${process.pid}` }] });
    default:
      return send({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'no such method' } });
  }
});

setInterval(() => {}, 1 << 30);
