"""The ``bigshuf`` command's entry point: Ctrl-C, SIGTERM and SIGHUP are held back from this module's first
line, before the command's own modules load (argparse, NumPy...), then ``cli.main`` runs and
takes them once it can handle them. ``python -m bigshuf`` does the same in ``__main__``."""

# The signal module's C core: ``signal`` itself first loads enum (6 ms in which a Ctrl-C would be
# a traceback); the mask it sets is the same.
import _signal  # type: ignore[import-not-found]  # (no stubs: the module is CPython's own)
import sys as _sys

_HELD = {_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP}

# A process multiprocessing spawns (a Dask worker of the engine's local cluster) runs the command's
# script again as its ``__mp_main__``, so imports this module too, and never runs ``main``. There
# SIGTERM stays open, by which the run ends its workers (held, a worker could not be ended, and a
# Ctrl-C hung the run's exit); SIGINT and SIGHUP, which a terminal sends its whole process group,
# are held for good: the run itself takes them and closes its workers, each of which printed a
# traceback otherwise.
_spawned = "__mp_main__" in _sys.modules
_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _HELD - {_signal.SIGTERM} if _spawned else _HELD)


def main() -> int:
    """Run the command with the mask the process started with (restored by ``cli.main``); its status
    is returned, or under ``ulimit -v`` the process ends with it (``address_space.leave``), or a
    signal that ended the run ends the process (``cli.end_by_signal``)."""
    from .core.plan import open_file_limit

    open_file_limit()  # raised before the command's modules load: their imports open files too
    from .address_space import leave
    from .cli import end_by_signal
    from .cli import main as run

    status = run(signal_mask=set(_mask))
    end_by_signal()
    return leave(status)
