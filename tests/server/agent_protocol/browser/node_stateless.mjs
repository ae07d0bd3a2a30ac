// The official JS SDK under Node (not bundled): an assistant created, a stateless run waited on
// and streamed with it, its versions listed, then deleted. Prints one JSON line for the test
// (tests/server/agent_protocol/test_js_sdk_node.py). Usage: node node_stateless.mjs URL API_KEY
import { Client } from "@langchain/langgraph-sdk";

const [apiUrl, apiKey] = process.argv.slice(2);
const client = new Client({ apiUrl, apiKey });

const assistant = await client.assistants.create({
  graphId: "agent",
  name: "from-node",
  context: { model_name: "small", max_attempts: 2 },
  metadata: { sdk: "js" },
});
const updated = await client.assistants.update(assistant.assistant_id, { context: { model_name: "large" } });
const waited = await client.runs.wait(null, assistant.assistant_id, { input: { ticks: 1 } });
let seen = null;
for await (const part of client.runs.stream(null, assistant.assistant_id, {
  input: { ticks: 0, echo_context: true },
  streamMode: "custom",
  context: { max_attempts: 3 },
})) {
  if (part.event === "custom" && part.data.context) seen = part.data.context;
}
const versions = await client.assistants.getVersions(assistant.assistant_id);
let refused = null;
try {
  await client.assistants.create({ graphId: "agent", context: { model_base_url: "http://127.0.0.1:9/v1" } });
} catch (err) {
  refused = { status: err.status ?? null, message: String(err.message ?? err) };
}
await client.assistants.delete(assistant.assistant_id);
let afterDelete = null;
try {
  await client.assistants.get(assistant.assistant_id);
} catch (err) {
  afterDelete = err.status ?? String(err);
}
console.log(JSON.stringify({ assistant, updated, waited, seen, versions, refused, afterDelete }));
