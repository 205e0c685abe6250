"""``python -m bigshuf``: the same as the ``bigshuf`` command (``command.main``, which holds
Ctrl-C back from its module's first line)."""

import sys

from .command import main

sys.exit(main())
