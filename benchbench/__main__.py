"""``python -m benchbench``: the CLI, usable where the console script is not on PATH."""

import sys

from benchbench.cli.main import main

sys.exit(main())
