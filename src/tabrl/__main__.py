"""``python -m tabrl`` runs the command line."""

from tabrl.cli import main

main()
