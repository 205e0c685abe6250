"""The ``bigshuf`` command's entry point: Ctrl-C and SIGTERM are held back from this module's first
line, before the command's own modules load (argparse, NumPy...), then ``cli.main`` runs and
takes them once it can handle them. ``python -m bigshuf`` does the same in ``__main__``."""

import signal

_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def main() -> int:
    """Run the command with the mask the process started with (restored by ``cli.main``)."""
    from .cli import main as run

    return run(signal_mask=_mask)
