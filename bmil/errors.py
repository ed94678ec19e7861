"""The one exception type the CLI turns into a clean, one-line error message."""


class BMILError(Exception):
    """A problem the user can fix (bad input, missing file, wrong name).

    The message names the problem *and* the fix; ``bmil`` prints it without a traceback.
    """
