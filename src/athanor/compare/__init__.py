"""Comparing runs from their folders: `athanor reproduce` (a re-run against its original) and
`athanor diff` (two runs side by side). Reads run folders only; knows nothing of Hydra."""
