// An agent speaking the Agent Client Protocol (v1) over stdio, written to the protocol's
// schema (newline-delimited JSON-RPC, no dependencies), shipped in the MCP test image. It keeps
// its sessions in /workspace/acp-sessions.json so a later process can load one, logs every
// method it is sent to /workspace/acp.log, and for each prompt: says what it will do, asks for
// permission to write, writes /workspace/acp-note.txt, and answers. A prompt that says "wait"
// runs until it is cancelled.
import fs from 'node:fs';
import readline from 'node:readline';

const store = '/workspace/acp-sessions.json';
const sessions = fs.existsSync(store) ? JSON.parse(fs.readFileSync(store, 'utf8')) : {};
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
const update = (sessionId, u) => send({ jsonrpc: '2.0', method: 'session/update', params: { sessionId, update: u } });
const pending = new Map();
let nextId = 100;
let waiting = null;
const ask = (method, params) => new Promise((resolve) => {
  const id = nextId++;
  pending.set(id, resolve);
  send({ jsonrpc: '2.0', id, method, params });
});

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const msg = JSON.parse(line);
  if (msg.method) fs.appendFileSync('/workspace/acp.log', `${msg.method} ${JSON.stringify(msg.params)}\n`);
  if (!msg.method && pending.has(msg.id)) { pending.get(msg.id)(msg.result); pending.delete(msg.id); return; }
  const ok = (result) => send({ jsonrpc: '2.0', id: msg.id, result });
  switch (msg.method) {
    case 'initialize':
      return ok({ protocolVersion: 1, agentCapabilities: { loadSession: true, mcpCapabilities: { http: false, sse: false } }, authMethods: [] });
    case 'session/new': {
      const sessionId = `acp-${Object.keys(sessions).length + 1}`;
      sessions[sessionId] = { cwd: msg.params.cwd, prompts: [] };
      fs.writeFileSync(store, JSON.stringify(sessions));
      return ok({ sessionId });
    }
    case 'session/load': {
      const s = sessions[msg.params.sessionId];
      if (!s) return send({ jsonrpc: '2.0', id: msg.id, error: { code: -32002, message: 'no such session' } });
      for (const p of s.prompts) update(msg.params.sessionId, { sessionUpdate: 'user_message_chunk', content: { type: 'text', text: p } });
      return ok(null);
    }
    case 'session/cancel':
      if (waiting) waiting();
      return;
    case 'session/prompt': {
      const { sessionId, prompt } = msg.params;
      const text = prompt.map((b) => b.text || '').join('');
      const s = sessions[sessionId];
      s.prompts.push(text);
      fs.writeFileSync(store, JSON.stringify(sessions));
      if (text.includes('wait')) {
        update(sessionId, { sessionUpdate: 'agent_message_chunk', content: { type: 'text', text: 'Waiting…' } });
        await new Promise((resolve) => { waiting = resolve; });
        return ok({ stopReason: 'cancelled' });
      }
      update(sessionId, { sessionUpdate: 'agent_message_chunk', content: { type: 'text', text: 'Writing the note. ' } });
      const toolCall = { toolCallId: 'call-1', title: 'Write acp-note.txt', kind: 'edit', status: 'pending' };
      update(sessionId, { sessionUpdate: 'tool_call', ...toolCall });
      const answer = await ask('session/request_permission', {
        sessionId,
        toolCall,
        options: [
          { optionId: 'yes', name: 'Allow', kind: 'allow_once' },
          { optionId: 'no', name: 'Reject', kind: 'reject_once' },
        ],
      });
      if (answer.outcome.outcome !== 'selected' || answer.outcome.optionId !== 'yes') {
        return ok({ stopReason: 'refusal' });
      }
      fs.writeFileSync(`${s.cwd}/acp-note.txt`, `prompt ${s.prompts.length} of ${sessionId}\n`);
      update(sessionId, { sessionUpdate: 'tool_call_update', toolCallId: 'call-1', status: 'completed' });
      update(sessionId, { sessionUpdate: 'agent_message_chunk', content: { type: 'text', text: `Done: prompt ${s.prompts.length} of ${sessionId}.` } });
      return ok({ stopReason: 'end_turn' });
    }
    default:
      if (msg.id !== undefined) send({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'no such method' } });
  }
});
