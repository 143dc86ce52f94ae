"""Helpline's repository layer: database setup, models and units of work.

Nothing here imports the GraphQL layer; callers pass typed ids in and get plain
dataclasses (never peewee models) back.
"""
