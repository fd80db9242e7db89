"""The one exception type for mistakes a user can make.

Library code raises :class:`SeldEdgeError` for bad input (wrong channel count, unreadable audio,
malformed metadata, ...). Only the command line catches it, prints its message on one line and exits
with :data:`USER_ERROR_EXIT_CODE`; it does the same for an OSError (the machine's fault, not the
code's: a full disk, a file removed mid-run). Everything else is a bug and keeps its traceback.
"""

from collections.abc import Iterable
from difflib import get_close_matches

USER_ERROR_EXIT_CODE = 2


class SeldEdgeError(Exception):
    """Bad input from the user; the message names the file and says what is wrong."""


def user_message(err: SeldEdgeError | OSError) -> str:
    """The line a command prints for a user error: its message, or an OSError's reason and file (a full
    disk, a file removed while it was read)."""
    if isinstance(err, OSError):
        return f"{err.filename}: {err.strerror or err}" if err.filename else str(err.strerror or err)
    return str(err)


def unknown_name(what: str, name: str, known: Iterable[str]) -> SeldEdgeError:
    """The error for a name not among ``known``: the close matches, or else every known name."""
    known = list(known)
    close = get_close_matches(name, known, n=2)
    hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(known)}"
    return SeldEdgeError(f"unknown {what} {name!r}; {hint}")


def require(module: str, extra: str) -> None:
    """Refuse, in one line naming what to install, a command whose optional dependency is missing.

    The plain install is the torch-free runtime; training, export and parity need the extras.
    """
    from importlib.util import find_spec

    if find_spec(module) is None:
        torch_first = "pip install torch==2.13.0 && " if extra in ("train", "export") else ""
        raise SeldEdgeError(f"this command needs {module}: {torch_first}pip install 'seld-edge[{extra}]'")
