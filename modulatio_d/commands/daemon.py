"""(filled in by the daemon work)."""


def register(sub, parent) -> None:
    return None
