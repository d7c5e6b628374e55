"""Old module spelling of `evaluate`: says the new one and runs it."""

import sys

from athanor.cli.evaluate import evaluate

if __name__ == "__main__":
    print("`python -m athanor.evaluation` is now `python -m athanor.evaluate`.", file=sys.stderr)
    evaluate()
