"""Optional parts, each installed with the pip extra of the same name.

``metrics`` (Prometheus and health probes), ``dashboard`` (the web UI and its JSON API) and
``embedded`` (a local PostgreSQL). Only the command line and the runner (the two places that
assemble a program) import them, and only when asked to, so the core never needs them.
"""
