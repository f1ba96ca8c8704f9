"""A FastAPI app that enqueues in the request's transaction and runs its jobs in-process.

Run it with ``DATABASE_URL=postgresql://... uvicorn examples.fastapi_app.app:app``
(see docs/sqlalchemy.md).
"""
