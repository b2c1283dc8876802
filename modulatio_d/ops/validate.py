"""`modulatio validate`: every file of the vault, checked for syntax and for meaning.

Syntax: each kind of file has one reader that raises BadFile; validate runs
them all and collects the problems instead of stopping at the first.

Meaning: what parses may still fail later, so a file that reads well is
checked against the rest of the vault and this host:
- the config's time zone exists (entries' own zones are checked when read);
- every agent a step names, and every agent a config agent `use:`s, resolves
  (the config's agents, the built-ins, the `modulatio_d.agents` plugins), with
  no loop;
- every reflector exists: `plugin:NAME` among the `modulatio_d.reflectors`
  plugins, a path as a file (a relative one from the plan's folder, where the
  daemon runs it), a bare command on PATH;
- the `cwd` folders of the steps still to run exist;
- each cron entry's schedule fires again, and its template is a valid plan;
- each hook entry of the config is whole (a refused one is an error), and a
  webhook's secret can be read (a warning: the daemons' environment may differ).
A problem is an error (the daemon will refuse or fail it) or a warning (it may
work: a command missing from this shell's PATH may be on the daemon's, a
folder an earlier step may make, a schedule whose next fire is over a year
away). Final plans (completed, failed, aborted) are not checked for meaning:
nothing of them runs unless a person retries them.

Trust: what the daemons' trust checks (store/trust.py) would refuse, judged as
for a daemon run by the owner of the vault folder: the folders above the vault,
the vault, `.modulatio/`, the config, each project folder with its plans/,
cron/ and tickets/, and every file in them (errors).

Each file is read and parsed once: meaning checks use the parsed plan, entry
and config, and find line numbers in the bytes already read. What a plan's checks need of
its file (ops/plan_facts.py) is kept in the per-user row cache by stat signature: an
unchanged plan is not read again; its checks against everything else run every time.
Every plan is checked from its row, whether cached, read now, or made by the pool that
reads many uncached plans on every core (ops/parallel.py): one path, one output.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from modulatio_d.core.errors import BadFile
from modulatio_d.ops import listing, plan_facts
from modulatio_d.ops.dependencies import after_problems
from modulatio_d.ops.plan_facts import Facts, read_plan  # the reader, imported on a first read
from modulatio_d.ops.problems import Problem, Severity
from modulatio_d.ops.validate_lines import agent_line, is_plain, key_line, text_of
from modulatio_d.store import config, pause
from modulatio_d.store.rowcache import RowCache
from modulatio_d.store.vault import Vault

Reader = Callable[[Vault, Path], object]
FAR = timedelta(days=366)
_SHELL_WORDS = frozenset({"exec", "cd", ".", "eval", "set", "export", "if", "for", "while",
                          "case", "{", "(", "!", "command", "env"})
"""First words that are the shell's own: nothing on PATH to look for."""


BUILT_IN_AGENTS = frozenset({"mock"})
AGENT_GROUP = "modulatio_d.agents"
"""daemon/executors/agent.py's BUILTINS and GROUP (a test holds them equal): that module
brings importlib.metadata, 10-25 ms of a start, needed only by self.plugins."""
KINDS = ("plans", "cron", "tickets", "triggers")
"""The vault's kinds of file, by folder name (plans first: cron entries' templates are
looked up among the plans already read)."""


def readers() -> dict[str, Reader]:
    """The reader of each kind of vault file, by folder name (imported when a file of a
    kind other than plans is found: croniter alone is 8 ms of a command's start)."""
    from modulatio_d.store import cron_entries, tickets, triggers
    return {"plans": read_plan, "cron": cron_entries.read_snapshot,
            "tickets": tickets.read_ticket, "triggers": triggers.read_trigger}


def validate(vault: Vault, environ: Mapping[str, str] | None = None,
             now: datetime | None = None, tick: Callable[[], None] = int) -> list[Problem]:
    from modulatio_d.core.times import utcnow

    check = _Checker(vault, dict(os.environ if environ is None else environ), now or utcnow())
    return check.run(tick)


class _Checker:
    def __init__(self, vault: Vault, environ: dict[str, str], now: datetime):
        self.vault, self.environ, self.now = vault, environ, now
        self.problems: list[Problem] = []
        self.cfg: config.Config | None = None
        self.zone_ok = True
        self.plans: dict[tuple[str, str], object] = {}  # (project, id) -> Facts, True, False
        self._plugins: dict[str, set[str]] = {}
        self._dirs: dict[Path, bool] = {}
        self._listed: dict[tuple[str, str], list[listing.Entry]] = {}
        self._clean: set[tuple] = set()
        """plan_facts.same_checks keys whose checks found nothing this run: a plan of the
        same key, in no `after` chain, would find nothing either (10,000 plans hold a few
        dozen keys), so it is not rebuilt from its row nor checked again."""
        self.facts = RowCache(vault.root, plan_facts.USE)
        self.prepared: dict[str, dict] = {}  # rows the pool made (plan_facts.prepare)
        self.every_plan = True  # every plans/ folder was listed: cached rows of others go

    def add(self, path: Path, reason: str, line: int | None = None, hint: str = "",
            severity: Severity = Severity.ERROR) -> None:
        self.problems.append(Problem(path, reason, line, hint, severity))

    def run(self, tick: Callable[[], None] = int) -> list[Problem]:
        from modulatio_d.store import trust

        self.check_config()
        try:  # the operator's pause (store/pause.py): refused as the daemons refuse it
            pause.load(pause.path_of(self.vault.meta))
        except (BadFile, OSError) as e:
            self.problems.append(Problem.of(e) if isinstance(e, BadFile) else Problem(
                pause.path_of(self.vault.meta), f"cannot be read: {e.strerror}"))
        # What the daemons' trust checks would refuse (docs/security.md).
        self.problems += [Problem.of(p) for p in trust.vault_problems(self.vault,
                                                                     listing=self.files)]
        from modulatio_d.ops.modulatio_import import vault_notes
        for path, reason, hint, warning in vault_notes(self.vault, self.now):  # case twins, cron
            self.add(path, reason, None, hint, Severity.WARNING if warning else Severity.ERROR)
        for name in self.vault.misnamed_projects():
            self.add(self.vault.root / name, "folder name is not a valid project code, so its "
                     "plans never run", None, "rename it to letters, digits, '_', '-' and '.'")
        self.prepared = plan_facts.prepare(self.vault, self.facts, self.files, tick)
        for project in self.vault.projects():
            try:
                self.vault.check_folder(self.vault.project_dir(project))
            except BadFile as e:  # a project folder linked in: told once, not per kind
                self.problems.append(Problem.of(e))
                continue
            for kind in KINDS:
                try:
                    self.vault.check_folder(self.vault.project_dir(project) / kind)
                except BadFile as e:  # a linked folder: none of its files is read
                    self.problems.append(Problem.of(e))
                    self.every_plan = self.every_plan and kind != "plans"
                    continue
                for entry in self.files(project, kind):
                    if kind == "plans":
                        if entry.path not in self.prepared:
                            tick()  # the pool ticked for the others
                        self.plan_file(project, entry)
                        continue
                    tick()
                    path = Path(entry.path)
                    try:
                        read = readers()[kind](self.vault, path)
                    except BadFile as e:
                        self.problems.append(Problem.of(e))
                        self.plans[(project, path.stem)] = False
                        continue
                    except OSError as e:
                        self.add(path, f"cannot be read: {e.strerror}")
                        continue
                    if kind == "cron":
                        self.check_entry(*read)
        self.facts.save(complete=self.every_plan)
        after_problems(self.plans, self.add, Severity.ERROR, Severity.WARNING)  # `after`
        return self.problems

    # --- the config -------------------------------------------------------------------

    def check_config(self) -> None:
        path = self.vault.config_path
        try:
            self.cfg = config.load(path)
        except BadFile as e:
            self.problems.append(Problem.of(e))
            self.zone_ok = False
            return
        except OSError as e:
            self.add(path, f"cannot be read: {e.strerror}")
            self.zone_ok = False
            return
        text = text_of(path)
        from modulatio_d.ops.hooks import config_problems  # refused hooks, unreadable secrets
        self.problems += [Problem(*p[:4], Severity(p[4]))
                          for p in config_problems(self.vault, self.cfg, self.environ)]
        if self.cfg.timezone is not None:
            from modulatio_d.core import cron
            try:
                cron.parse_zone(self.cfg.timezone)
            except ValueError as e:
                self.zone_ok = False
                self.add(path, f"timezone: {e}", key_line(text, "timezone"),
                         "cron entries without a timezone of their own do not fire until it "
                         "is fixed")
        for name, spec in self.cfg.agents.items():
            if spec.use is not None:
                problem = self.agent_problem(name)
                if problem:
                    self.add(path, f"agent {name!r}: {problem}", agent_line(text, name),
                             "name an agent of this file, mock, or an installed plugin")
            elif spec.run is not None:
                self.check_command(path, agent_line(text, name), f"agent {name!r}: run",
                                   spec.run, folder=None)
        if self.cfg.reflector:
            line = key_line(text, "reflector")
            if is_plain(self.cfg.reflector):
                self.check_command(path, line, "reflector", self.cfg.reflector, None)
                return
            # A relative path runs from each plan's folder: it must be in every project's.
            for project in self.vault.projects():
                folder = self.vault.plans_dir(project)
                if folder.is_dir() and self.check_command(path, line, "reflector",
                                                          self.cfg.reflector, folder):
                    break  # once is enough to say it

    # --- agents, commands ---------------------------------------------------------------

    def plugins(self, group: str) -> set[str]:
        if group not in self._plugins:
            from modulatio_d.daemon import plugins

            self._plugins[group] = plugins.names(group)
        return self._plugins[group]

    def agent_known(self, name: str) -> bool:
        return (self.cfg is not None and name in self.cfg.agents) or name in BUILT_IN_AGENTS \
            or name in self.plugins(AGENT_GROUP)

    def agent_problem(self, name: str) -> str | None:
        """Why the agent `name` of the config does not resolve, or None."""
        seen: list[str] = []
        while True:
            seen.append(name)
            spec = self.cfg.agents.get(name) if self.cfg else None
            if spec is None or spec.run is not None:
                break
            if spec.use in seen:
                return "uses itself in a loop: " + " -> ".join([*seen, spec.use])
            name = spec.use
        if spec is not None or name in BUILT_IN_AGENTS or name in self.plugins(AGENT_GROUP):
            return None
        return (f"uses {name!r}, which is neither an agent of this file, built in (mock), nor "
                f"an installed plugin ({AGENT_GROUP})")

    def check_command(self, path: Path, line: int | None, what: str,
                      command: str | tuple[str, ...], folder: Path | None) -> bool:
        """A problem when `command`'s program cannot be found; True when one was added."""
        if isinstance(command, str) and command.startswith("plugin:"):
            from modulatio_d.daemon.reflect import GROUP

            name = command.removeprefix("plugin:")
            if name in self.plugins(GROUP):
                return False
            self.add(path, f"{what} {command!r}: no plugin {name!r} is installed in the "
                     f"entry-point group {GROUP}", line,
                     "install the package that provides it, or fix the name")
            return True
        try:
            words = shlex.split(command) if isinstance(command, str) else list(command)
        except ValueError as e:
            self.add(path, f"{what} {command!r} cannot be split into words: {e}", line)
            return True
        while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
            words.pop(0)  # VAR=value before the program
        if not words or words[0] in _SHELL_WORDS:
            return False
        program = words[0]
        if "/" in program:
            where = Path(program) if os.path.isabs(program) or folder is None \
                else folder / program
            if folder is None and not os.path.isabs(program):
                return False  # relative to the step's folder: each step may differ
            if not where.is_file():
                self.add(path, f"{what}: {where} does not exist", line,
                         "create it, or fix the path (a relative one is taken from the "
                         "plan's folder)")
                return True
            if not os.access(where, os.X_OK):
                self.add(path, f"{what}: {where} is not executable", line,
                         f"chmod +x {where}")
                return True
            return False
        if shutil.which(program, path=self.environ.get("PATH", os.defpath)) is None:
            self.add(path, f"{what}: {program!r} is not on PATH here", line,
                     "install it, or give its full path; the daemon's PATH may differ from "
                     "this shell's", Severity.WARNING)
            return True
        return False

    # --- plans --------------------------------------------------------------------------

    def files(self, project: str, kind: str) -> list[listing.Entry]:
        """A folder's listing by name, once a run (the trust checks and the checks share
        it)."""
        if (project, kind) not in self._listed:
            self._listed[(project, kind)] = listing.files(self.vault, project, kind)
        return self._listed[(project, kind)]

    def plan_file(self, project: str, entry: listing.Entry) -> None:
        """Check one plan from its row (ops/plan_facts.py): the cache's, the pool's
        (self.prepared), or the file's read now; cold, warm and parallel alike."""
        row = self.facts.get(entry.path, entry.st)
        if row is None and (row := self.prepared.pop(entry.path, None)
                            or plan_facts.read_row(self.vault, entry.path, entry.st)):
            self.facts.put(entry.path, entry.st, row)
        same = None
        if row is not None and row.get("after") == []:
            if row.get("final") is True:
                self.plans[(project, entry.name[:-3])] = True  # ended, in no `after` chain
                return
            same = plan_facts.same_checks(project, row)
            if same is not None and same in self._clean:  # checked clean this run already
                self.plans[(project, entry.name[:-3])] = True
                return
        path = Path(entry.path)
        found = plan_facts.from_row(path, row) if row is not None else None
        if found is None:  # no row: a refusal of the file's kind or access, told each run
            try:
                found = plan_facts.of_plan(read_plan(self.vault, path).plan)
            except BadFile as e:
                found = e
            except OSError as e:
                self.add(path, f"cannot be read: {e.strerror}")
                return
        if isinstance(found, BadFile):
            self.problems.append(Problem.of(found))
            self.plans[(project, path.stem)] = False
            return
        self.plans[(project, path.stem)] = found  # truthy
        told = len(self.problems)
        self.check_plan(found)
        if same is not None and len(self.problems) == told:
            self._clean.add(same)

    def is_dir(self, path: Path) -> bool:
        if path not in self._dirs:
            self._dirs[path] = path.is_dir()
        return self._dirs[path]

    def check_plan(self, plan: Facts) -> None:
        if plan.final:
            return
        if plan.body_error:  # core/modulatio_shape: fails closed
            self.add(plan.path, plan.body_error, plan.body_error_line,
                     "a daemon pauses this plan with a ticket instead of running it")
        if plan.reflector:
            self.check_command(plan.path, plan.reflector_line, "reflector",
                               plan.reflector, plan.path.parent)
        project_dir = plan.path.parent.parent
        if plan.cwd and not self.is_dir(project_dir / plan.cwd):
            self.add(plan.path, f"cwd: the folder {project_dir / plan.cwd} does not exist",
                     plan.cwd_line, "create it, or fix cwd (relative to the project folder)")
        for i, step in enumerate(plan.steps):
            line = step.line
            where = f"sub-objective {step.index + 1}"
            if step.agent is not None and not self.agent_known(step.agent):
                self.add(plan.path, f"{where}: agent {step.agent!r} is neither in "
                         f".modulatio/config.yaml agents, built in (mock), nor an installed "
                         f"plugin ({AGENT_GROUP})", line, "add it to the config's agents")
            if step.cwd and not self.is_dir(project_dir / step.cwd):
                first = i == 0
                self.add(plan.path, f"{where}: cwd: the folder {project_dir / step.cwd} "
                         "does not exist", line,
                         "create it, or fix cwd (relative to the project folder)" if first
                         else "fine if an earlier step makes it; else create it or fix cwd",
                         Severity.ERROR if first else Severity.WARNING)

    # --- cron entries -------------------------------------------------------------------

    def check_entry(self, snapshot, entry) -> None:
        from modulatio_d.core import cron
        from modulatio_d.store.zones import host_zone

        text = snapshot.raw.decode("utf-8", "replace")
        if entry.template is not None and not self.plans.get((entry.project, entry.template)):
            missing = (entry.project, entry.template) not in self.plans
            self.add(entry.path, f"template {entry.template!r}: "
                     + (f"there is no plan {entry.project}/plans/{entry.template}.md" if missing
                        else "is not a valid plan (see its own problem)"),
                     key_line(text, "template"),
                     "create the template plan (as a draft) or fix the id" if missing else "")
        if entry.timezone is None and not self.zone_ok:
            return  # the config's zone is reported once, at the config
        zone_name = entry.timezone or (self.cfg.timezone if self.cfg else None)
        zone = cron.parse_zone(zone_name) if zone_name else host_zone(self.environ)
        fires = cron.next_fires(entry.expr, zone, self.now, 1)
        line = key_line(text, "schedule")
        if not fires:
            self.add(entry.path, f"schedule {entry.schedule!r} never fires again", line,
                     "fix the schedule, or remove the entry")
        elif fires[0] - self.now > FAR:
            self.add(entry.path, f"schedule {entry.schedule!r} fires next on "
                     f"{fires[0].isoformat()}, more than a year from now", line,
                     "check the day and month fields", Severity.WARNING)
