"""graphile-py: a PostgreSQL job queue that shares its database with Node graphile-worker."""
