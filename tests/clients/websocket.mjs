// graphql-ws 6's client against a running Helpline: the README's token-refresh recipe (return a
// fresh token from connectionParams; the server closes an expiring socket with 4403, which the
// client retries), a token whose role may never connect (4401: fatal, no retries), and a caller
// over their bound of sockets (4429: fatal too). Prints what the app would see, as JSON, for
// tests/e2e/test_clients.py to check.
//
//   node websocket.mjs '{"url": "...", "conversation": "<uuid>", "sender": "<jwt>",
//                        "tokens": ["<expiring jwt>", "<fresh jwt>"], "forbidden": "<jwt>",
//                        "crowded": {"token": "<jwt>", "bound": 10}}'

import { createClient } from "graphql-ws";
import WebSocket from "ws";

const config = JSON.parse(process.argv[2]);
const wsUrl = config.url.replace(/^http/, "ws");
const GUARD_MS = 60_000;
const MESSAGE_ADDED = "subscription ($id: UUID!) { messageAdded(conversationId: $id) { content } }";

async function send(content) {
  const response = await fetch(config.url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${config.sender}` },
    body: JSON.stringify({
      query: "mutation ($id: UUID!, $c: String!) { sendMessage(conversationId: $id, content: $c) { id } }",
      variables: { id: config.conversation, c: content },
    }),
  });
  if (!response.ok) throw new Error(`send failed: ${response.status}`);
}

// --- the README's graphql-ws block, as printed (written out by tests/e2e/test_clients.py) -----
const report = { tokensAsked: 0, closeCodes: [], heard: [] };
process.env.HELPLINE_TOKEN = config.sender;
const { client: recipe } = await import("./readme-graphql-ws.generated.mjs");
report.recipeHeard = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("the recipe's client heard nothing")), GUARD_MS);
  let probes = 0;
  const prober = setInterval(() => {
    probes += 1;
    send(`recipe ${probes}`).catch(() => {});
  }, 300);
  const stop = recipe.subscribe(
    { query: MESSAGE_ADDED, variables: { id: config.conversation } },
    {
      next: ({ data }) => {
        clearInterval(prober);
        clearTimeout(timer);
        stop();
        resolve(data.messageAdded.content.startsWith("recipe"));
      },
      error: reject,
      complete: () => {},
    },
  );
});
await recipe.dispose();

// --- the token refresh: a fresh token on every (re)connection --------------------------------
const tokens = [...config.tokens];
const client = createClient({
  url: wsUrl,
  webSocketImpl: WebSocket,
  connectionParams: async () => {
    report.tokensAsked += 1;
    const token = tokens.length > 1 ? tokens.shift() : tokens[0];  // the app's token source
    return { Authorization: `Bearer ${token}` };
  },
  on: { closed: (event) => report.closeCodes.push(event.code) },
});

// Subscribe, and send probes until one is heard after the socket was closed and reopened.
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(JSON.stringify(report))), GUARD_MS);
  let probes = 0;
  const prober = setInterval(() => {
    probes += 1;
    send(`probe ${probes}`).catch(() => {});
  }, 300);
  client.subscribe(
    { query: MESSAGE_ADDED, variables: { id: config.conversation } },
    {
      next: ({ data }) => {
        report.heard.push({ content: data.messageAdded.content, reconnected: report.closeCodes.length > 0 });
        if (report.closeCodes.length > 0) {
          clearInterval(prober);
          clearTimeout(timer);
          resolve();
        }
      },
      error: (error) => reject(new Error(`subscription failed: ${error?.code ?? error}`)),
      complete: () => {},
    },
  );
});
await client.dispose();

// --- a role that may never connect: the app hears it at once ---------------------------------
const refused = { connecting: 0 };
const forbidden = createClient({
  url: wsUrl,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${config.forbidden}` },
  on: { connecting: () => { refused.connecting += 1; } },
});
const started = Date.now();
refused.error = await new Promise((resolve) => {
  forbidden.subscribe(
    { query: MESSAGE_ADDED, variables: { id: config.conversation } },
    { next: () => {}, error: (error) => resolve({ code: error.code, reason: error.reason }), complete: () => resolve(null) },
  );
});
refused.seconds = (Date.now() - started) / 1000;
await forbidden.dispose();
report.refused = refused;

// --- one caller over their bound of sockets (4429): fatal too, no retry storm ------------------
if (config.crowded) {
  const { token, bound } = config.crowded;
  const held = [];
  for (let i = 0; i < bound; i += 1) {
    const open = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      lazy: false,
      connectionParams: { Authorization: `Bearer ${token}` },
    });
    await new Promise((resolve) => { open.on('connected', resolve); });
    held.push(open);
  }
  const over = { connecting: 0 };
  const extra = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
    on: { connecting: () => { over.connecting += 1; } },
  });
  over.error = await new Promise((resolve) => {
    extra.subscribe(
      { query: MESSAGE_ADDED, variables: { id: config.conversation } },
      { next: () => {}, error: (error) => resolve({ code: error.code, reason: error.reason }), complete: () => resolve(null) },
    );
  });
  await new Promise((resolve) => { setTimeout(resolve, 500); }); // a retry would connect again
  await extra.dispose();
  await Promise.all(held.map((open) => open.dispose()));
  report.crowded = over;
}

console.log(JSON.stringify(report));
process.exit(0);
