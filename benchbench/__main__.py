"""``python -m benchbench``: the CLI, usable where the console script is not on PATH."""

import sys

from benchbench.cli import main

sys.exit(main())
