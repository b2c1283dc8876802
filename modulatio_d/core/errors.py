"""One base error; each subclass builds its one-line message from fields.

cli/main.py catches ModulatioError, prints str(error) to stderr and exits with
`exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_SYSTEM = 3


class ModulatioError(Exception):
    exit_code = EXIT_FAILURE


class UsageError(ModulatioError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = EXIT_USAGE


class VaultNotFound(ModulatioError):
    """No vault at or above the folder: the command was pointed at the wrong place,
    a usage error like a --vault that is not a folder."""

    exit_code = EXIT_USAGE

    def __init__(self, start: Path):
        super().__init__(
            f"no vault found at or above {start}: pass --vault PATH, set MODULATIO_VAULT, "
            f"or create one with `modulatio init PATH`"
        )


class BadFile(ModulatioError):
    """A file a person wrote that cannot be used as it is.

    The message is `path:line: reason` (line left out when unknown), followed by
    what to do when that is not obvious from the reason.
    """

    def __init__(self, path: Path | str, reason: str, line: int | None = None, hint: str = ""):
        self.path = Path(path)
        self.reason = reason
        self.line = line
        self.hint = hint
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: {reason}" + (f" ({hint})" if hint else ""))


class FileUnusable(BadFile):
    """A file the system will not let us use (permissions, a read-only or full disk):
    reported like a BadFile, with a system failure's exit code (3), since the fix is the
    operator's, not an edit of the file."""

    exit_code = EXIT_SYSTEM


class FileFault:
    """`fail(reason, key, hint)`: raises the BadFile of one file at the line of `key`.

    Every reader of a person's file (plan, cron entry, ticket, config) checks its
    keys through one of these (markdown.Document.fault for frontmatter); `line=`
    points at an item inside a key's value instead. Without a line, `fallback`.
    """

    def __init__(self, path: Path, line_of: Callable[[str], int | None],
                 fallback: int | None = None):
        self.path = path
        self.line_of = line_of
        self.fallback = fallback

    def __call__(self, reason: str, key: str | None = None, hint: str = "",
                 line: int | None = None) -> NoReturn:
        raise BadFile(self.path, reason, line or (self.line_of(key) if key else None)
                      or self.fallback, hint)


class NotFound(ModulatioError):
    """An argument naming a plan, cron entry, ticket or unit that does not exist: usage."""

    exit_code = EXIT_USAGE

    def __init__(self, what: str, name: str, hint: str = ""):
        self.what = what
        self.name = name
        super().__init__(f"no {what} named {name!r}" + (f": {hint}" if hint else ""))


class InvalidName(UsageError):
    def __init__(self, what: str, name: str):
        super().__init__(
            f"{what} {name!r} is not a valid name: use letters, digits, '_', '-' and '.', "
            f"starting with a letter, digit or '_'"
        )


class TransitionRefused(ModulatioError):
    def __init__(self, plan_id: str, current: str, action: str, allowed_from: list[str]):
        froms = ", ".join(allowed_from) or "nothing"
        super().__init__(
            f"plan {plan_id} is {current}: {action} works only from {froms}"
        )


class LockBusy(ModulatioError):
    def __init__(self, path: Path, holder: str = ""):
        super().__init__(
            f"{path} is locked by a running daemon" + (f" ({holder})" if holder else "")
        )


class StepError(ModulatioError):
    """A step that cannot be started (an unknown agent, a missing folder)."""


class FileChanged(ModulatioError):
    """The file on disk is no longer the one that was read; re-read and re-apply."""

    def __init__(self, path: Path):
        super().__init__(f"{path} changed on disk while it was being written; try again")
