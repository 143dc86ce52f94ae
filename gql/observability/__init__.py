"""Observability: Prometheus metrics (metrics.py) and the JSON logs with their request id
(logs.py)."""
