// Apollo Client 4 against a running Helpline, set up by the README's "Clients" recipe itself
// (its two blocks, written to readme-apollo.generated.mjs by tests/e2e/test_clients.py): a split
// link (subscriptions over graphql-ws, the rest over HTTP with automatic persisted queries),
// relayStylePagination for `messages` and the inbox, and `messageAdded` written into the cached
// page. Prints what a user of the client would see, as JSON, for
// tests/e2e/test_clients.py to check.
//
//   node apollo.mjs '{"url": "http://127.0.0.1:8000/graphql", "customer": "<jwt>", "admin": "<jwt>"}'

import { gql } from "@apollo/client";

const config = JSON.parse(process.argv[2]);
const GUARD_MS = 20_000;

// --- the recipe: the README's own blocks (tests/e2e/test_clients.py writes them out) --------

// What went over the wire, per bearer token, for the checks (the recipe uses the global fetch).
const sentBy = new Map();
const realFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const bearer = new Headers(init.headers).get("authorization");
  if (!sentBy.has(bearer)) sentBy.set(bearer, []);
  sentBy.get(bearer).push(JSON.parse(init.body ?? "{}"));
  return realFetch(input, init);
};

async function helplineClient(token, who) {
  process.env.HELPLINE_TOKEN = token;  // what the recipe reads, as it runs
  return import(`./readme-apollo.generated.mjs?${who}`);  // a module instance per user
}

// --- the documents ----------------------------------------------------------------------------

const OPEN = gql`
  mutation Open {
    adminConversation { conversation { id admin { name } } }
  }
`;
const SEND = gql`
  mutation Send($id: UUID!, $content: String!, $key: String) {
    sendMessage(conversationId: $id, content: $content, clientMessageId: $key) { id content }
  }
`;
const MESSAGES = gql`
  query Messages($id: UUID!, $after: String) {
    conversation(id: $id) {
      id
      messages(first: 2, after: $after) {
        edges { cursor node { id content createdAt } }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
`;
const MESSAGE_ADDED = gql`
  subscription Live($id: UUID!) {
    messageAdded(conversationId: $id) { id content createdAt }
  }
`;
const INBOX = gql`
  query Inbox {
    inbox(first: 20) { edges { cursor node { id unreadCount conversation { id } } } pageInfo { hasNextPage endCursor } }
  }
`;
const MARK_READ = gql`
  mutation MarkRead($id: UUID!) { markRead(conversationId: $id) { id unreadCount } }
`;

// --- the scenario -----------------------------------------------------------------------------

const report = {};
const { client: customer, addToCachedPage } = await helplineClient(config.customer, "customer");
const { client: admin } = await helplineClient(config.admin, "admin");
const customerSent = [];
sentBy.set(`Bearer ${config.customer}`, customerSent);

const opened = await customer.mutate({ mutation: OPEN });
const conversationId = opened.data.adminConversation.conversation.id;
report.adminName = opened.data.adminConversation.conversation.admin.name;
report.firstRequests = customerSent.map(describe);  // the hash alone, then with the document

for (const n of [1, 2, 3]) {
  await customer.mutate({
    mutation: SEND,
    variables: { id: conversationId, content: `message ${n}`, key: `key-${n}` },
  });
}

// Pages: the first, then older ones with fetchMore; the cache holds them as one list.
const watched = customer.watchQuery({ query: MESSAGES, variables: { id: conversationId } });
const watching = watched.subscribe({});
const first = await watched.refetch();
await watched.fetchMore({
  variables: { after: first.data.conversation.messages.pageInfo.endCursor },
});
watching.unsubscribe();
const merged = customer.readQuery({ query: MESSAGES, variables: { id: conversationId } });
report.pagedContents = merged.conversation.messages.edges.map((e) => e.node.content);

// APQ: a document the server has learned goes as its hash alone.
customerSent.length = 0;
await customer.query({
  query: MESSAGES,
  variables: { id: conversationId },
  fetchPolicy: "network-only",
});
report.repeatRequests = customerSent.map(describe);

// Live: messageAdded over the socket, written into the cached page.
const heard = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("messageAdded never arrived")), GUARD_MS);
  let probes = 0;
  const subscription = customer
    .subscribe({ query: MESSAGE_ADDED, variables: { id: conversationId } })
    .subscribe({
      next: ({ data }) => {
        if (!data.messageAdded.content.startsWith("live")) return;
        clearTimeout(timer);
        clearInterval(prober);
        subscription.unsubscribe();
        resolve(data.messageAdded);
      },
      error: reject,
    });
  // a subscription has no acknowledgement: send until one is heard
  const prober = setInterval(() => {
    probes += 1;
    admin.mutate({
      mutation: SEND,
      variables: { id: conversationId, content: `live ${probes}`, key: `live-${probes}` },
    });
  }, 300);
});
addToCachedPage(customer.cache, conversationId, heard);
const withLive = customer.readQuery({ query: MESSAGES, variables: { id: conversationId } });
report.liveFirst = withLive.conversation.messages.edges[0].node.content;
report.heard = heard.content;

// The admin's inbox: markRead's InboxItem updates the cached inbox in place (InboxItem.id).
const inbox = await admin.query({ query: INBOX });
const item = (data) => data.inbox.edges.find((e) => e.node.conversation.id === conversationId).node;
report.unreadBefore = item(inbox.data).unreadCount;
await admin.mutate({ mutation: MARK_READ, variables: { id: conversationId } });
report.unreadAfterFromCache = item(admin.readQuery({ query: INBOX })).unreadCount;

// A customer asking for staff operations: a typed error naming the operation.
try {
  await customer.query({ query: INBOX });
  report.customerInbox = "no error";
} catch (error) {
  report.customerInbox = error.errors?.map((e) => [e.extensions?.code, e.message]);
}

console.log(JSON.stringify(report));
process.exit(0);  // the socket clients would keep the process alive

function describe(body) {
  return {
    operation: body.operationName,
    document: typeof body.query === "string",
    hash: Boolean(body.extensions?.persistedQuery?.sha256Hash),
  };
}
