"""``python -m tabrl`` runs the command line."""

from tabrl.app.cli import script

script()
