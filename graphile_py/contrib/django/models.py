"""No models: the queue's tables are graphile-worker's, installed by graphile-py's migrations.

This module exists because Django sends ``post_migrate`` only to apps that have a models
module, and that signal is when the app installs the queue's schema (see ``apps.py``).
"""
