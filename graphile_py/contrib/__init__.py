"""Integrations with the frameworks our users run: Django, SQLAlchemy and FastAPI, pytest,
OpenTelemetry.

Each lives in its own module or package here, needs its own extra
(``pip install 'graphile-py[django]'`` and so on), and is imported only by the user's
code: nothing in the rest of graphile_py imports this package.
"""
