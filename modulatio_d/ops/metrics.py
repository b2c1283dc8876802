"""The vault's state in the Prometheus text exposition format (version 0.0.4).

Made for node_exporter's textfile collector: run `modulatio metrics --output
/var/lib/node_exporter/textfile/modulatio.prom` every minute (a systemd timer
or cron); the file is replaced atomically, so the collector never reads half
of it. Each run reads the vault afresh: status.survey (one cheap look per plan
file), the usage files, and events.jsonl.

Sources, and why:
- plans, tickets, daemons, cron next fires, refused files: status.survey.
- steps run and failed: the `step_ended` lines of events.jsonl, not the plans'
  reflection logs. The log is append-only and survives deleted and archived
  plans, so the counters only grow, as Prometheus counters should; and
  reading it costs a substring test per line, where the reflection logs
  would need a full YAML parse of every plan (about 10 ms each). A step is
  failed when its outcome is failed, timeout or error; a step a person
  aborted, or one cut short by a daemon's shutdown, is not.
- usage: every `<plan-id>.usage.jsonl` (what `plan show` sums).
- cron fires, misses and skips: `cron_fired`, `cron_missed` and
  `cron_skipped` lines (their `count`, for a line that stands for several
  scheduled times).
Counters drop when their source shrinks (events.jsonl rotated, a usage file
deleted with its plan); Prometheus' rate() and increase() treat that as a
counter reset.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from modulatio_d import __version__
from modulatio_d.core.times import parse_time
from modulatio_d.ops.survey import INVALID, STATUSES, survey
from modulatio_d.store import fs, usage
from modulatio_d.store.events import read_counted
from modulatio_d.store.vault import Vault

FAILURES = frozenset({"failed", "timeout", "error"})
"""core/verdict.FAILURES as the outcomes events.jsonl writes (held equal by
tests/unit/test_survey_cache.py): written out, so that `metrics` does not import the
plan reader to count failed steps."""
_EVENTS = ("step_ended", "cron_fired", "cron_missed", "cron_skipped", "file_refused")


# --- the format -------------------------------------------------------------------------

def _encodable(text: str) -> str:
    # A lone surrogate ("X\ud800" in an event line decodes to one) cannot be
    # written as UTF-8: it is shown as its escape, `\ud800`, instead.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_label(value: object) -> str:
    return _encodable(str(value)).replace("\\", "\\\\").replace('"', '\\"').replace(
        "\n", "\\n")


def escape_help(text: str) -> str:
    return _encodable(text).replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


@dataclass
class Family:
    name: str
    type: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, object], float]] = field(default_factory=list)

    def add(self, value: float, **labels: object) -> None:
        self.samples.append((labels, value))

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        for labels, value in self.samples:
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{self.name}{{{text}}} {format_value(value)}" if text
                         else f"{self.name} {format_value(value)}")
        return lines


def render(families: Iterable[Family]) -> str:
    return "".join(line + "\n" for f in families for line in f.render())


# --- collecting ---------------------------------------------------------------------------

def collect(vault: Vault, now: datetime, environ: dict[str, str] | None = None,
            tick=int) -> list[Family]:
    started = time.monotonic()
    events, unreadable = read_counted(vault.events_path, _EVENTS)
    s = survey(vault, now, environ, events=[e for e in events if e["event"] == "file_refused"],
               tick=tick)
    projects = sorted(set(s.projects) | {p["project"] for p in s.plans})
    fams: list[Family] = []

    def family(name: str, kind: str, text: str) -> Family:
        f = Family(name, kind, text)
        fams.append(f)
        return f

    f = family("modulatio_build_info", "gauge", "The modulatio version that wrote these metrics.")
    f.add(1, version=__version__)

    counts = s.counts()["by_project"]
    f = family("modulatio_plans", "gauge",
               "Plan files by project and status (invalid: the status cannot be read).")
    for project in projects:
        for status in (*STATUSES, INVALID):
            f.add(counts.get(project, {}).get(status, 0), project=project, status=status)

    orphans: dict[str, int] = defaultdict(int)
    f = family("modulatio_plan_step_running_seconds", "gauge",
               "How long the current step of each executing plan has been running.")
    for p in s.executing:
        orphans[p["project"]] += p["orphan"]
        if p["step_running_s"] is not None:
            f.add(p["step_running_s"], project=p["project"], plan=p["id"])
    f = family("modulatio_plans_orphaned", "gauge",
               "Executing plans whose lock nobody holds: their daemon died; the next "
               "daemon resumes them.")
    for project in projects:
        f.add(orphans[project], project=project)

    run: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    fired: dict[tuple, int] = defaultdict(int)
    missed: dict[tuple, int] = defaultdict(int)
    skipped: dict[tuple, int] = defaultdict(int)
    for e in events:
        kind, project = e.get("event"), str(e.get("project") or "")
        if kind == "step_ended":
            run[project] += 1
            failed[project] += e.get("outcome") in FAILURES
        elif kind in ("cron_fired", "cron_missed", "cron_skipped"):
            key = (project, str(e.get("cron") or ""))
            count = e.get("count", 1)
            count = count if isinstance(count, int) and count >= 0 else 1
            if kind == "cron_fired":
                fired[key] += 1
            elif kind == "cron_missed":
                missed[key] += count
            else:
                skipped[key + (str(e.get("reason") or ""),)] += count

    f = family("modulatio_steps_run_total", "counter",
               "Step attempts that ended (events.jsonl step_ended), by project.")
    for project in sorted(set(projects) | set(run)):
        f.add(run[project], project=project)
    f = family("modulatio_steps_failed_total", "counter",
               "Step attempts that ended failed, timed out or could not start, by project.")
    for project in sorted(set(projects) | set(run)):
        f.add(failed[project], project=project)

    totals = _usage(vault, projects)
    f = family("modulatio_usage_tokens_total", "counter",
               "Model tokens used, from the plans' usage files, by project and direction.")
    for project in projects:
        f.add(totals[project].input_tokens, project=project, direction="input")
        f.add(totals[project].output_tokens, project=project, direction="output")
    f = family("modulatio_usage_cost_usd_total", "counter",
               "Model cost in US dollars, from the plans' usage files, by project.")
    for project in projects:
        f.add(round(totals[project].cost_usd, 6), project=project)
    f = family("modulatio_usage_calls_total", "counter",
               "Executor calls recorded in the plans' usage files, by project.")
    for project in projects:
        f.add(totals[project].calls, project=project)

    f = family("modulatio_events_unreadable_total", "counter",
               "Lines of events.jsonl that could not be read (not JSON, not an event) "
               "and were skipped.")
    f.add(unreadable)

    # Two heartbeat files may name one host and pid (a copied file, a pid reused
    # after a crash left its file): one series each, the freshest file's.
    daemons = list({(str(d["host"]), str(d["pid"])): d for d in reversed(s.daemons)}.values())
    daemons.reverse()  # freshest first, as survey.daemons lists them
    f = family("modulatio_daemons", "gauge",
               "Daemons with a heartbeat file, by state (stale: dead or silent too long).")
    for state in ("live", "stale"):
        f.add(sum(d["state"] == state for d in daemons), state=state)
    f = family("modulatio_daemon_live", "gauge",
               "1 for a live daemon, 0 for a stale heartbeat (dead, or silent too long).")
    for d in daemons:
        f.add(int(d["state"] == "live"), host=d["host"], pid=d["pid"])
    f = family("modulatio_daemon_last_tick_age_seconds", "gauge",
               "Seconds since each daemon's last tick, when these metrics were written.")
    for d in daemons:
        # A tick written after `now` was taken (or a host's clock ahead) is not in the future.
        f.add(max(d["age_s"], 0.0), host=d["host"], pid=d["pid"])
    f = family("modulatio_daemon_last_tick_timestamp_seconds", "gauge",
               "Unix time of each daemon's last tick.")
    for d in daemons:
        ticked = parse_time(d["last_tick"])
        if ticked is not None:
            f.add(round(ticked.timestamp(), 3), host=d["host"], pid=d["pid"])

    f = family("modulatio_tickets_open", "gauge",
               "Open tickets (decisions people must take), by project and severity.")
    open_t: dict[tuple, int] = defaultdict(int)
    for t in s.tickets:
        open_t[(t["project"], t["severity"])] += 1
    for project in projects:
        for severity in ("warning", "critical"):
            f.add(open_t[(project, severity)], project=project, severity=severity)

    cron_ids = sorted({(c["project"], c["id"]) for c in s.cron} | set(fired) | set(missed))
    f = family("modulatio_cron_fires_total", "counter",
               "Kickoff plans created by cron entries (events.jsonl cron_fired).")
    for key in cron_ids:
        f.add(fired[key], project=key[0], cron=key[1])
    f = family("modulatio_cron_missed_total", "counter",
               "Scheduled times passed over after downtime, by the entry's catch_up "
               "(events.jsonl cron_missed).")
    for key in cron_ids:
        f.add(missed[key], project=key[0], cron=key[1])
    f = family("modulatio_cron_skipped_total", "counter",
               "Scheduled times not fired because the entry was disabled or an earlier "
               "kickoff still ran (events.jsonl cron_skipped), by reason.")
    for key in sorted(skipped):
        f.add(skipped[key], project=key[0], cron=key[1], reason=key[2])
    f = family("modulatio_cron_next_fire_timestamp_seconds", "gauge",
               "Unix time of each enabled cron entry's next scheduled time.")
    for c in s.cron:
        if c.get("next_fire_ts") is not None:
            f.add(c["next_fire_ts"], project=c["project"], cron=c["id"])

    f = family("modulatio_refused_files", "gauge",
               "Files the daemons or this command could not use (see `modulatio status`), "
               "by kind.")
    refused: dict[str, int] = defaultdict(int)
    for r in s.refused:
        refused[r["kind"]] += 1
    for kind in sorted(set(refused) | {"plan", "cron", "ticket"}):
        f.add(refused[kind], kind=kind)

    _control(s.control, projects, family)

    f = family("modulatio_metrics_ok", "gauge",
               "0 when the vault could not be read for these metrics (see the command's "
               "error output), 1 when it was.")
    f.add(1)
    f = family("modulatio_metrics_generated_timestamp_seconds", "gauge",
               "Unix time these metrics were written.")
    f.add(round(now.timestamp(), 3))
    f = family("modulatio_metrics_duration_seconds", "gauge",
               "Seconds it took to read the vault for these metrics.")
    f.add(round(time.monotonic() - started, 4))
    return fams


def _control(c: dict, projects: list[str], family) -> None:
    """Pause, slots and waiting plans (ops/control_view.py)."""
    pause = c.get("pause") or {}
    f = family("modulatio_paused", "gauge",
               "1 while `modulatio pause` holds the vault (scope=vault) or a project "
               "(also 1 for all while the pause file is refused).")
    refused = bool(pause.get("unreadable"))
    f.add(int(refused or bool(pause.get("vault"))), scope="vault")
    for project in sorted(set(projects) | set(pause.get("projects") or {})):
        f.add(int(refused or project in (pause.get("projects") or {})), scope=project)
    f = family("modulatio_slots_limit", "gauge",
               "Plans that may execute at once, per limit of the capacity config.")
    g = family("modulatio_slots_in_use", "gauge", "Slots held now, per limit.")
    for slot in c.get("slots") or []:
        f.add(slot["limit"], limit_of=slot["limit_of"])
        g.add(slot["in_use"], limit_of=slot["limit_of"])
    f = family("modulatio_plans_waiting_for_slot", "gauge",
               "Plans the live daemons hold back because a limit is full.")
    f.add(len(c.get("waiting_for_slot") or []))


def _usage(vault: Vault, projects: list[str]) -> dict[str, usage.Totals]:
    out: dict[str, usage.Totals] = defaultdict(usage.Totals)
    for project in projects:
        try:
            files = [e.path for e in fs.entries(vault.plans_dir(project), ".usage.jsonl")
                     if not e.name.startswith(".")]
        except OSError:  # a linked plans/ folder: refused by status, never read
            continue
        total = usage.Totals()
        for path in files:
            total += usage.totals(path)  # line by line: never held whole
        out[project] = total
    return out


def text(vault: Vault, now: datetime, environ: dict[str, str] | None = None,
         tick=int) -> str:
    """The metrics file; `tick()` after each plan looked at (progress)."""
    return render(collect(vault, now, environ, tick))


def failed(now: datetime, error: BaseException) -> str:
    """What is written when the vault could not be read at all: a file all the same,
    so that a collector serves `modulatio_metrics_ok 0` rather than the last good
    numbers as if they were fresh."""
    f = Family("modulatio_metrics_ok", "gauge",
               "0 when the vault could not be read for these metrics (see the command's "
               "error output), 1 when it was.")
    f.add(0, error=type(error).__name__)
    g = Family("modulatio_metrics_generated_timestamp_seconds", "gauge",
               "Unix time these metrics were written.")
    g.add(round(now.timestamp(), 3))
    return render([Family("modulatio_build_info", "gauge",
                          "The modulatio version that wrote these metrics.",
                          [({"version": __version__}, 1)]), f, g])
