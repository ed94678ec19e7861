"""The one exception type the CLI turns into a clean, one-line error message."""


class BMILError(Exception):
    """A problem the user can fix (bad input, missing file, wrong name).

    The message names the problem *and* the fix; ``bmil`` prints it without a traceback.
    """


def require(ok: bool, key: str, value, allowed: str) -> None:
    """Refuse a setting outside its range, naming the key, the value and what is allowed."""
    if not ok:
        raise BMILError(f"{key} = {value!r} is out of range: it must be {allowed}.")


def find_cause(error: BaseException | None, kind: type) -> BaseException | None:
    """The first exception of type ``kind`` in ``error``'s chain (itself, then its cause or context,
    and so on), or None. A chain can loop (an exception raised while handling one that is its own
    context), so each is looked at once."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
