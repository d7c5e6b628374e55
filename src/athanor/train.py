"""`python -m athanor.train [overrides]` is the same as the `train` command."""

from athanor.cli import train

if __name__ == "__main__":
    train()
