"""Names given on the command line, matched against the vault: project codes
(case aside when one folder matches), and "did you mean" for ids that name
nothing. Listing reads folder names only (os.scandir), never a file, so it
stays fast on a vault of thousands of plans.
"""

from __future__ import annotations

import argparse

from modulatio_d.core import names
from modulatio_d.core.errors import NotFound, UsageError

KINDS = {"plan": "plans", "cron entry": "cron", "ticket": "tickets"}


def close_match(word: str, options: list[str]) -> str | None:
    """The option `word` was probably meant as: the same but for case, else difflib's."""
    same = [o for o in options if o.lower() == word.lower()]
    if same:
        return same[0]
    import difflib  # only when a word names nothing: not at every command's start

    lower = {o.lower(): o for o in options}
    found = difflib.get_close_matches(word.lower(), list(lower), n=1)
    return lower[found[0]] if found else None


def ids(vault, kind: str) -> list[str]:
    """Every id of a kind (`plans`, `cron`, `tickets`) in the vault, sorted."""
    return sorted(e.name[:-3] for p in vault.projects() for e in vault.files(p, kind))


def project_code(vault, code: str, ctx, new_ok: bool = False) -> str:
    """The project folder `code` names: exactly, else the one folder equal but for case
    (with a note on stderr). With none: `code` itself when `new_ok` (a command that
    makes a project), else a UsageError with "did you mean"."""
    names.check("project code", code)
    folders = vault.folders()
    if code in folders:
        return code
    same = [f for f in folders if f.lower() == code.lower()]
    if len(same) == 1:
        ctx.note(f"project {code!r} is {same[0]} (the folder {vault.root / same[0]}); "
                 f"using it")
        return same[0]
    if same:
        raise UsageError(f"project {code!r} matches the folders {', '.join(same)} but for "
                         f"case: give one of them exactly")
    if new_ok:
        return code
    known = vault.projects()
    close = close_match(code, known)
    hint = (f"did you mean {close!r}?" if close else
            f"projects: {', '.join(known)}" if known else "this vault has no project yet")
    raise UsageError(f"no project {code!r} in {vault.root} ({hint})")


def projects(vault, codes: list[str] | None, ctx) -> list[str]:
    return [project_code(vault, c, ctx) for c in codes or []]


def suggest_id(args: argparse.Namespace, ctx, error: NotFound) -> str:
    """`; did you mean 'X'?` for an id that names nothing, or ''."""
    kind = KINDS.get(error.what)
    if kind is None:
        return ""
    try:
        close = close_match(error.name, ids(ctx.vault(args), kind))
    except Exception:  # a hint must never hide the error it explains
        return ""
    return f"; did you mean {close!r}?" if close else ""
