"""``python -m graphile_py`` runs the command line."""

from graphile_py.cli import main

main()
