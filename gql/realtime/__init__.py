"""The realtime room: the hub that fans committed events out, the listeners that feed it, and
the presence heartbeat. The subscriptions that read the hub live beside the schema
(gql/graphql/subscriptions.py)."""
