"""The ``bigshuf`` command's entry point: Ctrl-C, SIGTERM and SIGHUP are held back from this module's first
line, before the command's own modules load (argparse, NumPy...), then ``cli.main`` runs and
takes them once it can handle them. ``python -m bigshuf`` does the same in ``__main__``."""

# The signal module's C core: ``signal`` itself first loads enum (6 ms in which a Ctrl-C would be
# a traceback); the mask it sets is the same.
import _signal  # type: ignore[import-not-found]  # (no stubs: the module is CPython's own)

_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP})


def main() -> int:
    """Run the command with the mask the process started with (restored by ``cli.main``)."""
    from .cli import main as run

    return run(signal_mask=set(_mask))
