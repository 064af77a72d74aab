"""``python -m router``: the same as the ``meshgate`` command."""

import sys

from router.cli import main

sys.exit(main())
