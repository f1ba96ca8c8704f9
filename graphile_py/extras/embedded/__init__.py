"""A local PostgreSQL managed by graphile-py (the ``embedded`` extra)."""
