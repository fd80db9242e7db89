"""`python -m seld_edge` runs the command line."""

from seld_edge.cli import main

main()
