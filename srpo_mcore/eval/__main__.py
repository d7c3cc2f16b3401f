"""``python -m srpo_mcore.eval``: see srpo_mcore/eval/cli.py."""

import sys

from srpo_mcore.eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
