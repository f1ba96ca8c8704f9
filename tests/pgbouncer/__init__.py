"""graphile-py through a real PgBouncer in transaction mode (issue 13)."""
