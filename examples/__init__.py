"""Example task module and enqueue script for graphile-py (see the README's Quickstart)."""
