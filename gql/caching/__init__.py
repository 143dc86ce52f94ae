"""Caches bounded by the memory they hold (lru.py), for every room that remembers things."""
