"""Training side of seld-edge (needs the [train] extra: torch)."""
