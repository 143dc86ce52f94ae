"""The WebSocket transport: graphql-transport-ws, subscriptions only."""
