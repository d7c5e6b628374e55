"""Training and evaluation: build the components, run the loop, step, evaluate. Knows nothing
of Hydra."""
