"""Across runs: the sweep table (`athanor report`)."""
