"""`modulatio completion bash|zsh|fish` and the hidden `modulatio __complete`.

Why no shtab or argcomplete: shtab writes no fish script, and argcomplete
needs a global hook or one registration per shell. Instead each shell gets
a wrapper of a dozen lines that hands the words typed so far to
`modulatio __complete SHELL -- WORDS...`, and this module answers by walking
the argparse tree itself, so subcommands, options, choices and help texts
can never drift from the parser, and the three shells behave the same. The
cost is one Python start per TAB (about 60 ms of CPU; `heartbeat`'s budget
rules apply: nothing heavy is imported).

The answer is one candidate a line: bare for bash, `value:description` for
zsh (`_describe`), `value<TAB>description` for fish; or the one line
`__files__` or `__dirs__`, asking the shell to complete a path itself.

Values come from the vault for arguments marked `action.complete = KIND`:
`project`, `plan` (`plan:ACTION`: only plans whose status allows ACTION, read
with the status peek, a regex on each file's head), `ticket`, `cron`; `file`
and `dir` are paths.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
FILES, DIRS = "__files__", "__dirs__"
_DESCRIBED_MAX = 200
"""Above this many plan candidates no titles are read: the list is too long to read anyway."""
_TITLE = re.compile(r"(?m)^title[ \t]*:[ \t]*[\"']?(.*?)[\"']?[ \t]*$")

SCRIPTS = {
    "bash": r"""# modulatio completion for bash, from `modulatio completion bash`.
# Load it from ~/.bashrc with: source <(modulatio completion bash)
# or save it as ~/.local/share/bash-completion/completions/modulatio
_modulatio() {
    local IFS=$'\n' cur=${COMP_WORDS[COMP_CWORD]}
    local -a reply
    reply=($(command "${COMP_WORDS[0]}" __complete bash -- "${COMP_WORDS[@]:1:COMP_CWORD}" \
             2>/dev/null))
    case ${reply[0]} in
        __files__) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
        __dirs__) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
        *) COMPREPLY=("${reply[@]}") ;;
    esac
}
complete -F _modulatio modulatio
""",
    "zsh": r"""#compdef modulatio
# modulatio completion for zsh, from `modulatio completion zsh`.
# Save it as _modulatio in a folder of $fpath (before compinit runs), or load it
# after compinit with: source <(modulatio completion zsh)
_modulatio() {
    local -a reply
    reply=("${(@f)$(command ${words[1]} __complete zsh -- "${(@)words[2,CURRENT]}" \
           2>/dev/null)}")
    case ${reply[1]} in
        __files__) _files ;;
        __dirs__) _files -/ ;;
        '') return 1 ;;
        *) _describe -t values modulatio reply ;;
    esac
}
if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _modulatio "$@"
else
    compdef _modulatio modulatio
fi
""",
    "fish": r"""# modulatio completion for fish, from `modulatio completion fish`.
# Save it as ~/.config/fish/completions/modulatio.fish
function __modulatio_complete
    set -l cur (commandline -ct)
    set -l tokens (commandline -opc) "$cur"
    set -l reply (command $tokens[1] __complete fish -- $tokens[2..-1] 2>/dev/null)
    switch "$reply[1]"
        case __files__
            __fish_complete_path "$cur"
        case __dirs__
            __fish_complete_directories "$cur"
        case '*'
            printf '%s\n' $reply
    end
end
complete -c modulatio -f -a '(__modulatio_complete)'
""",
}


def register(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("completion", help="print the shell completion script (bash, zsh, fish)",
                       description="Print the completion script of a shell. bash: "
                                   "source <(modulatio completion bash)")
    p.add_argument("shell", choices=SHELLS, help="bash, zsh or fish")
    p.set_defaults(run=run_completion)

    # No help=: left out of `modulatio --help`; the shells' scripts call it.
    p = sub.add_parser("__complete", parents=[parent],
                       description="The candidates for the last of WORDS (the words after "
                                   "`modulatio` on the command line), one a line.")
    p.add_argument("shell", choices=SHELLS, help="the shell asking: how to format the answer")
    p.add_argument("words", nargs=argparse.REMAINDER,
                   help="`--` then the words typed after `modulatio`, the last one the word "
                        "being completed (empty for a new word)")
    p.set_defaults(run=run_complete)


def run_completion(args, ctx) -> int:
    ctx.out.write(SCRIPTS[args.shell])
    return 0


def run_complete(args, ctx) -> int:
    words = list(args.words)
    if words[:1] == ["--"]:
        words = words[1:]
    mode, items = candidates(args.parser, words or [""], ctx, args.vault)
    if mode != "words":
        ctx.print(mode)
        return 0
    for value, about in items:
        about = " ".join(about.split())
        if args.shell == "zsh":
            ctx.print(value.replace(":", r"\:") + (f":{about}" if about else ""))
        elif args.shell == "fish":
            ctx.print(value + (f"\t{about}" if about else ""))
        else:
            ctx.print(value)
    return 0


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def candidates(parser: argparse.ArgumentParser, words: list[str], ctx,
               vault: str | None = None) -> tuple[str, list[tuple[str, str]]]:
    """("words", [(value, description)]) for the last of `words`, or (FILES|DIRS, [])."""
    *before, cur = words
    node, expect, npos, only_positional = parser, None, 0, False
    for w in before:
        if expect is not None:
            if w == "=":  # bash splits --vault=X into three words
                continue
            if expect.dest == "vault":
                vault = w
            expect = None
        elif w == "--":
            only_positional = True
        elif w.startswith("-") and w != "-" and not only_positional:
            opt, eq, value = w.partition("=")
            action = node._option_string_actions.get(opt)
            if action is not None and action.nargs != 0:
                if eq:
                    vault = value if action.dest == "vault" else vault
                else:
                    expect = action
        else:
            sub = _subparsers(node)
            if sub is not None and w in sub.choices:
                node, npos = sub.choices[w], 0
            else:
                npos += 1
    if expect is not None and cur != "=":
        return _values(expect, cur, ctx, vault)
    if expect is not None:
        return _values(expect, "", ctx, vault)
    if cur.startswith("-") and not only_positional:
        opt, eq, value = cur.partition("=")
        action = node._option_string_actions.get(opt)
        if eq and action is not None and action.nargs != 0:
            mode, items = _values(action, value, ctx, vault)
            return (mode, [(f"{opt}={v}", d) for v, d in items]) if mode == "words" \
                else ("words", [])
        return "words", [(s, a.help or "") for a in node._actions if a.help != argparse.SUPPRESS
                         for s in a.option_strings if s.startswith(cur)]
    sub = _subparsers(node)
    if sub is not None:
        about = {c.dest: c.help or "" for c in sub._choices_actions}
        return "words", [(n, about.get(n, "")) for n in sub.choices
                         if n.startswith(cur) and not n.startswith("__")]
    positionals = [a for a in node._actions if not a.option_strings]
    if npos < len(positionals):
        return _values(positionals[npos], cur, ctx, vault)
    return "words", []


def _values(action: argparse.Action, cur: str, ctx,
            vault: str | None) -> tuple[str, list[tuple[str, str]]]:
    kind = getattr(action, "complete", None)
    if kind == "file":
        return FILES, []
    if kind == "dir":
        return DIRS, []
    if action.choices is not None:
        return "words", [(str(c), "") for c in action.choices if str(c).startswith(cur)]
    if kind is None:
        return "words", []
    try:
        found = ctx.vault(argparse.Namespace(vault=vault))
        return "words", _from_vault(found, kind, cur)
    except Exception:  # no vault here, an unreadable folder: nothing to offer, no noise
        return "words", []


def _from_vault(vault, kind: str, cur: str) -> list[tuple[str, str]]:
    from modulatio_d.cli.lookup import ids

    if kind == "project":
        return [(p, "") for p in vault.projects() if p.startswith(cur)]
    folder, _, action = kind.partition(":")
    folder = {"plan": "plans", "ticket": "tickets", "cron": "cron"}[folder]
    found = [i for i in ids(vault, folder) if i.startswith(cur)]
    if folder != "plans" or (not action and len(found) > _DESCRIBED_MAX):
        return [(i, "") for i in found]
    from modulatio_d.core.markdown import peek_status
    from modulatio_d.core.plan import TRANSITIONS

    allowed = {s.value for s in TRANSITIONS[action][0]} if action else None
    out = []
    for plan_id, path in _plan_paths(vault, found):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                head = f.read(64 * 1024)
        except OSError:
            continue
        status = peek_status(head) or "draft"
        if allowed is not None and status not in allowed:
            continue
        end = head.find("\n---", 3)
        title = _TITLE.search(head, 0, end if end >= 0 else len(head))
        out.append((plan_id, f"{status}: {title.group(1)}" if title else status))
    return sorted(out)


def _plan_paths(vault, plan_ids: list[str]):
    wanted = set(plan_ids)
    for project in vault.projects():
        for entry in vault.files(project, "plans"):
            if entry.name[:-3] in wanted:
                yield entry.name[:-3], Path(entry.path)
