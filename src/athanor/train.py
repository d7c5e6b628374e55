"""Module entry point of the `train` command: `python -m athanor.train …` and
`torchrun … -m athanor.train …` (the command itself lives in ``athanor.cli.train``)."""

from athanor.cli.train import train

if __name__ == "__main__":
    train()
