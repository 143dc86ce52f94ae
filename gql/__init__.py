"""Helpline's GraphQL API: Strawberry types and resolvers over the repository."""
