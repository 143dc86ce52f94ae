// graphql-http's audit of the GraphQL-over-HTTP spec (MUST, SHOULD and MAY) against a running
// Helpline. Prints each audit's id, status and reason, as JSON, for tests/e2e/test_clients.py.
//
//   node audit.mjs http://127.0.0.1:8000/graphql

import { auditServer } from "graphql-http";

const results = await auditServer({ url: process.argv[2] });
console.log(
  JSON.stringify(results.map((r) => ({ id: r.id, name: r.name, status: r.status, reason: r.reason }))),
);
