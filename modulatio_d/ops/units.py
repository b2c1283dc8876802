"""Fill this install's paths into the systemd units that ship with modulatio.

The canonical units are modulatio_d/units/modulatio-daemon.service (one
daemon; with `pool_unit`, one pool of N workers) and modulatio-daemon@.service
(a template for N daemons): package data,
read through importlib.resources (packaging/systemd/ at the top of a checkout
links to that folder). Both are working units as they stand: ExecStart runs
`/usr/bin/env modulatio` and the vault is /srv/modulatio/vault, named on the
four lines that need it (Environment=, ReadWritePaths=, RequiresMountsFor=,
and ExecStart through ${MODULATIO_VAULT}; ReadWritePaths= cannot read a
variable, hence the literal path).

render_unit() replaces the command with this install's absolute Python
(`python -P -m modulatio_d`, so neither PATH nor console scripts matter) and the
vault with the chosen one. For a user manager (`systemctl --user`) it also
removes what such a manager refuses or skips; see USER_FAILS and
USER_IGNORED, and docs/systemd.md.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from modulatio_d.core.errors import NotFound, UsageError

UNIT_NAMES = {False: "modulatio-daemon.service", True: "modulatio-daemon@.service"}
DEFAULT_VAULT = "/srv/modulatio/vault"
DEFAULT_COMMAND = "ExecStart=/usr/bin/env modulatio "

# A user manager has no privileges: these stop the unit from starting at all
# (217/USER, 216/GROUP, or 218/CAPABILITIES: each of the last five removes
# capabilities from the bounding set, which takes CAP_SETPCAP).
USER_FAILS = frozenset({
    "User", "Group", "CapabilityBoundingSet",
    "PrivateDevices", "ProtectKernelModules", "ProtectKernelLogs", "ProtectClock",
})
# These need a mount or UTS namespace that an unprivileged manager cannot
# make: systemd 252 skips them with a debug message and starts the unit
# unsandboxed. Keeping them would promise a sandbox that is not there (and
# `systemd-analyze --user security` would still count them). StateDirectory=
# only served as the system user's writable home.
USER_IGNORED = frozenset({
    "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp", "PrivateMounts",
    "ProtectKernelTunables", "ProtectControlGroups", "ProtectProc", "ProtectHostname",
    "StateDirectory", "StateDirectoryMode",
})
# network-online.target belongs to the system manager; a user manager has none.
USER_DROP_LINES = frozenset({"Wants=network-online.target", "After=network-online.target"})

USER_HEADER = """\
# Rendered for a user manager (systemctl --user): the options a user manager
# refuses (User=, Group=, capabilities) or silently skips (file-system
# namespacing) are left out. See "User units" in docs/systemd.md.
"""


def unit_text(instances: bool, *, folder: Traversable | None = None) -> str:
    """The shipped unit: the template for N daemons when `instances`, else the single one.

    `folder` is where to read it (tests); by default the package's units/."""
    name = UNIT_NAMES[instances]
    if folder is None:
        folder = resources.files("modulatio_d") / "units"
    unit = folder / name
    if not unit.is_file():
        raise NotFound("systemd unit", name,
                       f"looked in {folder}; this install does not ship its unit files, "
                       f"reinstall the package")
    return unit.read_text(encoding="utf-8")


def render_unit(template_text: str, *, python_exe: str, vault: str, user: bool) -> str:
    """The unit with `python_exe -P -m modulatio_d` as its command and `vault` as its vault.

    Both must be absolute paths. With `user`, the result is for
    ~/.config/systemd/user/: options that fail or are ignored there are removed
    (together with the comment lines right above them), and it is wanted by
    default.target.
    """
    exe = _word(_checked_path("python executable", python_exe)).replace("$", "$$")
    vault = _checked_path("vault", vault)
    replacements = {
        f"Environment=MODULATIO_VAULT={DEFAULT_VAULT}": "Environment="
        + _word(f"MODULATIO_VAULT={vault}"),
        f"ReadWritePaths={DEFAULT_VAULT}": "ReadWritePaths=" + _word(vault),
        f"RequiresMountsFor={DEFAULT_VAULT}": "RequiresMountsFor=" + _word(vault),
    }
    seen: set[str] = set()
    out: list[str] = []
    comments: list[str] = []  # the comment block above the next line
    for line in template_text.splitlines():
        if line.startswith(DEFAULT_COMMAND):
            seen.add(DEFAULT_COMMAND)
            # -P, as for --detach: a unit's working folder (a user unit's is $HOME)
            # must not be where `modulatio_d` is looked for first.
            line = f"ExecStart={exe} -P -m modulatio_d " + line[len(DEFAULT_COMMAND):]
        elif line in replacements:
            seen.add(line)
            line = replacements[line]
        if line.startswith("#"):
            comments.append(line)
            continue
        if user and _fails_or_is_ignored_in_user_mode(line):
            comments.clear()
            continue
        if user and line == "WantedBy=multi-user.target":
            line = "WantedBy=default.target"
        out.extend(comments)
        comments.clear()
        out.append(line)
    out.extend(comments)
    missing = {DEFAULT_COMMAND, *replacements} - seen
    if missing:
        raise ValueError(f"not a modulatio unit template: no line starting {sorted(missing)}")
    return (USER_HEADER if user else "") + "\n".join(out) + "\n"


POOL_KILL_MODE = """\
# A pool (`daemon --workers N`): SIGTERM goes to the supervisor alone, which
# forwards it once to each worker (each stops its step, leaves its plan
# executing, exits 0). With control-group every worker would get a second
# SIGTERM straight from systemd, and a second SIGTERM kills a step at once.
# Whatever still runs after TimeoutStopSec gets SIGKILL, as before.
KillMode=mixed"""


def pool_unit(unit: str, workers: int) -> str:
    """The single unit, rendered, running a pool of `workers` (docs/systemd.md, "A pool")."""
    out = []
    for line in unit.splitlines():
        if line.startswith("ExecStart=") and " daemon --vault " in line:
            line = line.replace(" daemon --vault ", f" daemon --workers {workers} --vault ", 1)
        elif line == "KillMode=control-group":
            while out and out[-1].startswith("#"):
                out.pop()  # the comment said every process gets SIGTERM: not for a pool
            line = POOL_KILL_MODE
        out.append(line)
    return "\n".join(out) + "\n"


def _fails_or_is_ignored_in_user_mode(line: str) -> bool:
    key = line.split("=", 1)[0].strip()
    return key in USER_FAILS or key in USER_IGNORED or line in USER_DROP_LINES


def _checked_path(what: str, path: str) -> str:
    if not path.startswith("/"):
        raise UsageError(f"{what} {path!r} must be an absolute path for a systemd unit")
    # The options naming paths unquote differently (ReadWritePaths= keeps
    # backslashes, Environment= reads C escapes): refuse what they could read
    # differently rather than escape it three ways.
    bad = sorted({c for c in path if c in "\"'\\" or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise UsageError(f"{what} {path!r} contains {''.join(bad)!r}, which a systemd unit "
                         f"cannot carry here; use a path without quotes, backslashes or "
                         f"control characters")
    return path


def _word(value: str) -> str:
    # `%` starts a specifier in every option used here; whitespace would split
    # the value into several words unless quoted.
    value = value.replace("%", "%%")
    return f'"{value}"' if any(c.isspace() for c in value) else value
