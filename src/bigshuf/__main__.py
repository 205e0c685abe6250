"""``python -m bigshuf``: the same as the ``bigshuf`` command."""

import signal
import sys

# Held back from the first moment: a Ctrl-C while the modules load is taken once main() can
# handle it (exit status 130), never as a traceback from an import. main() restores the mask.
_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

from .cli import main  # noqa: E402

sys.exit(main(signal_mask=_mask))
