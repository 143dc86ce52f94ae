// Apollo Client 4 against a running Helpline, set up as the README's "Clients" recipe says:
// a split link (subscriptions over graphql-ws, the rest over HTTP with automatic persisted
// queries), relayStylePagination for `messages` and the inbox, and `messageAdded` written into
// the cached page. Prints what a user of the client would see, as JSON, for
// tests/e2e/test_clients.py to check.
//
//   node apollo.mjs '{"url": "http://127.0.0.1:8000/graphql", "customer": "<jwt>", "admin": "<jwt>"}'

import { createHash } from "node:crypto";

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition, relayStylePagination } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const config = JSON.parse(process.argv[2]);
const GUARD_MS = 20_000;

// --- the recipe -----------------------------------------------------------------------------

function helplineClient(url, token, sent) {
  const http = new HttpLink({
    uri: url,
    headers: { authorization: `Bearer ${token}` },
    fetch: (input, init) => {
      sent.push(JSON.parse(init.body ?? "{}"));  // what went over the wire, for the checks
      return fetch(input, init);
    },
  });
  const persisted = new PersistedQueryLink({
    sha256: (document) => createHash("sha256").update(document).digest("hex"),
  });
  const socket = new GraphQLWsLink(
    createClient({
      url: url.replace(/^http/, "ws"),
      webSocketImpl: WebSocket,
      connectionParams: () => ({ Authorization: `Bearer ${token}` }),
    }),
  );
  const isSubscription = ({ query }) => {
    const definition = getMainDefinition(query);
    return definition.kind === "OperationDefinition" && definition.operation === "subscription";
  };
  return new ApolloClient({
    link: ApolloLink.split(isSubscription, socket, persisted.concat(http)),
    cache: new InMemoryCache({
      typePolicies: {
        Conversation: { fields: { messages: relayStylePagination() } },
        Query: { fields: { inbox: relayStylePagination(["assignedToMe"]) } },
      },
    }),
  });
}

// Adds a message heard live to the conversation's cached first page (newest first).
function addToCachedPage(cache, conversationId, message) {
  cache.modify({
    id: cache.identify({ __typename: "Conversation", id: conversationId }),
    fields: {
      messages(existing, { toReference }) {
        if (!existing || existing.edges.some((e) => e.node.__ref === `Message:${message.id}`)) {
          return existing;
        }
        const edge = { __typename: "MessageEdge", cursor: message.id, node: toReference(message) };
        return { ...existing, edges: [edge, ...existing.edges] };
      },
    },
  });
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
const customerSent = [];
const customer = helplineClient(config.url, config.customer, customerSent);
const admin = helplineClient(config.url, config.admin, []);

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
