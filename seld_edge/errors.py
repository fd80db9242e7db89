"""The one exception type for mistakes a user can make.

Library code raises :class:`SeldEdgeError` for bad input (wrong channel count, unreadable audio,
malformed metadata, ...). Only the command line catches it, prints its message on one line and exits
with :data:`USER_ERROR_EXIT_CODE`; everything else is a bug and keeps its traceback.
"""

USER_ERROR_EXIT_CODE = 2


class SeldEdgeError(Exception):
    """Bad input from the user; the message names the file and says what is wrong."""
