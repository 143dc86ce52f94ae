"""The GraphQL schema: types, resolvers, authorization, errors, validation rules, the fast
path's plans and live-message fan-out. Nothing here knows HTTP or WebSocket transport."""
