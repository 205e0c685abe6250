"""``python -m bigshuf``: the same as the ``bigshuf`` command."""

import sys

from .cli import main

sys.exit(main())
