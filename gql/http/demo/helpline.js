// What both demo pages share: where Helpline is, the caller's token, requests over HTTP and
// subscriptions over graphql-ws. The token and an optional API origin come from the URL
// fragment (#token=<jwt>&api=<origin>), which never reaches a server.

import { createClient } from "graphql-ws";

export function settings() {
  const params = new URLSearchParams(location.hash.slice(1));
  const api = (params.get("api") || location.origin).replace(/\/+$/, "");
  const token = params.get("token");
  return {
    token,
    me: token ? claims(token).sub : null,
    http: `${api}/graphql`,
    ws: `${api.replace(/^http/, "ws")}/graphql`,
  };
}

function claims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return {};
  }
}

export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

// One GraphQL request over HTTP: its data, or an ApiError with the error's code.
export async function request(config, query, variables = {}) {
  let response;
  try {
    response = await fetch(config.http, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/graphql-response+json, application/json",
        authorization: `Bearer ${config.token}`,
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError("Helpline cannot be reached", "NETWORK_ERROR");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`Helpline answered HTTP ${response.status}`, "BAD_RESPONSE");
  }
  if (body.errors && body.errors.length) {
    const [error] = body.errors;
    throw new ApiError(error.message, error.extensions && error.extensions.code);
  }
  return body.data;
}

// The page's one socket; graphql-ws reconnects by itself and asks for the token each time.
export function socket(config) {
  return createClient({
    url: config.ws,
    connectionParams: () => ({ Authorization: `Bearer ${config.token}` }),
  });
}

// Subscribe; ``onData`` gets each result's data. Returns the function that unsubscribes.
export function subscribe(client, query, variables, onData, onError) {
  return client.subscribe(
    { query, variables },
    {
      next: (result) => (result.errors ? onError(result.errors[0]) : onData(result.data)),
      error: (error) => onError(error),
      complete: () => {},
    },
  );
}

export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
}

export function time(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
