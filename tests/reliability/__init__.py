"""Reliability tests (issue 5): crashes, restarts, load, bad input, timeouts, security."""
