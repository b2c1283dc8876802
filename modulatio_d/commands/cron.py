"""(filled in by the cron work)."""


def register(sub, parent) -> None:
    return None
