"""Automatic persisted queries: the documents this process learned, by hash (queries.py)."""
