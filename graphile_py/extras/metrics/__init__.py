"""Prometheus metrics fed by the pool's events, and the ``/metrics``, ``/healthz`` and
``/readyz`` server (the ``metrics`` extra)."""
