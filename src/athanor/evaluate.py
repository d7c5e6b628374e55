"""Module entry point of the `evaluate` command: `python -m athanor.evaluate …` (the command
itself lives in ``athanor.cli.evaluate``)."""

from athanor.cli.evaluate import evaluate

if __name__ == "__main__":
    evaluate()
