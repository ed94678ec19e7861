"""The one exception type the CLI turns into a clean, one-line error message."""


class BMILError(Exception):
    """A problem the user can fix (bad input, missing file, wrong name).

    The message names the problem *and* the fix; ``bmil`` prints it without a traceback.
    """


def require(ok: bool, key: str, value, allowed: str) -> None:
    """Refuse a setting outside its range, naming the key, the value and what is allowed."""
    if not ok:
        raise BMILError(f"{key} = {value!r} is out of range: it must be {allowed}.")
