"""The HTTP transport: the ASGI app, the GraphQL view, the fast path's front, middleware."""
