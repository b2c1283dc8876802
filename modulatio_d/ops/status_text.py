"""`modulatio status` as text for people: the Survey (survey.py) rendered.

One section per part of the survey, in the order an operator asks: are the
daemons alive, what do the plans do, what waits for a person (paused plans,
tickets), what fires next, and which files were refused. On a terminal the
progress is a bar; in a pipe or a file plain `done/total (NN%)`, so that a
log or a mail stays readable.
"""

from __future__ import annotations

from modulatio_d.core.controls import neutralise
from modulatio_d.core.times import iso
from modulatio_d.ops.control_view import lines as control_lines
from modulatio_d.ops.survey import INVALID, STATUSES, Survey


def duration(seconds: float | None) -> str:
    """`45s`, `12m05s`, `3h04m`, `2d03h`."""
    if seconds is None:
        return "?"
    s = int(max(seconds, 0))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def bar(done: int, total: int, tty: bool, width: int = 20) -> str:
    """A progress bar on a terminal; plain `done/total (NN%)` for pipes and files."""
    pct = 100 * done // total if total else 100
    if not tty:
        return f"{done}/{total} ({pct}%)"
    filled = width * done // total if total else width
    return f"[{'█' * filled}{'░' * (width - filled)}] {done}/{total}"


def render(s: Survey, tty: bool = False) -> str:
    out: list[str] = [f"vault {s.vault}   at {iso(s.now)}", ""]

    live = [d for d in s.daemons if d["state"] == "live"]
    stale = [d for d in s.daemons if d["state"] == "stale"]
    hosts = sorted({str(d["host"]) for d in live})
    per_host = ("   (" + ", ".join(f"{h}: {sum(1 for d in live if d['host'] == h)}"
                                   for h in hosts) + ")") if len(hosts) > 1 else ""
    out.append(f"daemons: {len(live)} live, {len(stale)} stale" + per_host
               + ("   (none live: approved plans wait; start one with `modulatio daemon`)"
                  if not live else ""))
    for d in s.daemons:
        doing = (f"running {d['active_plan']} step {_n(d['step'])}" if d.get("active_plan")
                 else d.get("paused") or "idle")
        name = f"{d['host']}.{d['pid']}"
        if d["state"] == "stale":
            doing = f"{d['reason']}; was {doing}"
        out.append(f"  {name:<20} {d['state']:<6} up {duration(d['uptime_s']):<7} "
                   f"last tick {duration(d['age_s'])} ago   {doing}")
        if d.get("uid") == 0 and d["state"] == "live":
            out.append(f"  {'':<20} WARNING: runs as root (--allow-root): every step runs as "
                       f"root; run the daemon as the vault's user")

    if s.control:
        extra = control_lines(s.control)
        if extra:
            out += ["", *extra]

    c = s.counts()
    out.append("")
    out.append(f"plans: {c['total']}   " + "  ".join(
        f"{k} {v}" for k, v in c["by_status"].items() if v or k != INVALID))
    for project, counts in sorted(c["by_project"].items()):
        out.append(f"  {project:<16} " + ", ".join(
            f"{k} {counts[k]}" for k in (*STATUSES, INVALID) if counts.get(k)))

    if s.executing:
        out.append("")
        out.append(f"executing: {len(s.executing)}")
        for p in s.executing:
            step = (f"step {_n(p['step_index'])}: {p['step_title']}"
                    if p["step_title"] is not None
                    else "finishing")
            timing = f"plan running {duration(p['running_s'])}"
            if p["step_running_s"] is not None:
                timing = (f"step running {duration(p['step_running_s'])} "
                          f"(attempt {p['attempt']}), {timing}")
            out.append(f"  {p['id']:<20} {bar(p['done'], p['total'], tty)}  {step}")
            who = (f"held by {p['holder'].get('host')}.{p['holder'].get('pid')}"
                   if p["holder"] else "held")
            out.append(f"  {'':<20} {timing}; {who}" if p["held"] else
                       f"  {'':<20} ORPHAN: no daemon holds its lock (its daemon died); the "
                       f"next daemon resumes it at step {_n(p['step_index'])}")
            if p.get("last_result"):
                out.append(f"  {'':<20} last: {p['last_result']}")

    if s.paused:
        out.append("")
        out.append(f"paused: {len(s.paused)}")
        brief = [p for p in s.paused if not p["detail"]]
        for p in s.paused:
            if not p["detail"]:
                continue
            tickets = ", ".join(p.get("tickets") or []) or "no open ticket"
            out.append(f"  {p['id']:<20} {p['done']}/{p['total']}  {tickets}")
            if p["last_error"]:
                out.append(f"  {'':<20} {p['last_error']}")
            if p.get("last_result"):
                out.append(f"  {'':<20} last: {p['last_result']}")
        if brief:
            shown = ", ".join(p["id"] for p in brief[:10])
            more = f" and {len(brief) - 10} more" if len(brief) > 10 else ""
            out.append(f"  also paused (not parsed here: `modulatio plan list --status paused`): "
                       f"{shown}{more}")

    if s.waiting:
        out.append("")
        out.append(f"approved, not taken yet: {len(s.waiting)}")
        for w in s.waiting:
            out.append(f"  {w['id']:<20} {w['reason']}")

    out.append("")
    out.append(f"open tickets: {len(s.tickets)}")
    for t in s.tickets:
        decided = "" if t["decision"] == "pending" else f" (decided: {t['decision']})"
        out.append(f"  {t['id']:<24} {t['severity']:<8} plan {t['plan']}{decided}  "
                   f"{t['reason']}")

    if s.cron:
        out.append("")
        out.append(f"cron entries: {len(s.cron)}")
        for e in s.cron:
            if "error" in e:
                when = e["error"]
            elif not e["enabled"]:
                when = "disabled"
            else:
                when = f"next {e['next_fire'] or 'never'}"
                if e.get("next_fire_ts") is not None:
                    when += f" (in {duration(e['next_fire_ts'] - s.now.timestamp())})"
                if e["due_since"]:
                    when += f"; due since {e['due_since']}, not fired yet"
            out.append(f"  {e['id']:<20} {e['schedule']:<14} {e['timezone'] or '-':<16} {when}")

    if s.triggers:
        out.append("")
        out.append(f"triggers: {len(s.triggers)}")
        from modulatio_d.ops.triggers import summary

        for t in s.triggers:
            state = "" if t["enabled"] else "disabled; "
            out.append(f"  {t['id']:<20} {state}{summary(t)}")

    out.append("")
    out.append(f"refused files: {len(s.refused)}")
    for r in s.refused:
        where = f"{r['path']}:{r['line']}" if r.get("line") else r["path"]
        by = " (refused by a daemon)" if r["source"] == "daemon" else ""
        out.append(f"  {where}: {r['reason']}{by}")
    if s.counts()["by_status"]["approved"]:
        out.append("  (approved plans are checked by the daemons when they claim; "
                   "`modulatio validate` checks every file)")
    steps = next_steps(s)
    if steps:
        out.append("")
        out.extend(steps)
    # Every line holds text from vault files (titles, reasons, names): shown escaped.
    return "\n".join(neutralise(line) for line in out)


def next_steps(s: Survey) -> list[str]:
    """What a person should do next, when something waits for one: the last lines."""
    out = []
    pending = [t for t in s.tickets if t["decision"] == "pending"]
    if pending:
        t = pending[0]
        more = (f" ({len(pending) - 1} more open: `modulatio ticket list`)"
                if len(pending) > 1 else "")
        out.append(f"next: ticket {t['id']} waits for you about plan {t['plan']}: "
                   f"`modulatio ticket approve {t['id']}` resumes the plan, "
                   f"`modulatio ticket decline {t['id']}` aborts it{more}")
    for p in s.paused:
        if p["detail"] and not p.get("tickets"):
            out.append(f"next: {p['id']} is paused with no ticket: `modulatio plan resume "
                       f"{p['id']}` when it may go on")
            break
    return out


def _n(index: object) -> object:
    """A 0-based step index as people count steps (from 1)."""
    return index + 1 if isinstance(index, int) else index
