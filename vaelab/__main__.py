"""``python -m vaelab``: the command line (see vaelab.cli)."""

import sys

from .cli import main

sys.exit(main())
