"""Driving the GlusterFS test bed (.ci/testbeds/glusterfs-testbed.sh) from tests.

The bed: hosts h1..hN on one machine, each with its own network, mount, UTS (hostname
hK) and PID namespaces, all mounting one GlusterFS volume at `Bed.mount` (the same path
everywhere); the root filesystem (this checkout, its venv, pytest's tmp_path) is shared.
The test process itself is on no host: it acts on a host only through `run_on`/`start`
(a command there) or `path` (the host's view of a file, through /proc/<holder>/root).

Sharing one bed between pytest sessions: glusterd keeps its state in /var/lib/glusterd,
one per machine, so every session on the machine uses the same bed. `acquire` takes
STATE_LOCK (exclusive, only while bringing it up or down) and holds USERS_LOCK shared
for the whole session; the first user (nobody else holds USERS_LOCK) takes down
whatever a killed session left and brings a clean bed up, later users reuse it, and
`release` takes it down only when it can turn its shared lock exclusive (the last user).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "testbeds" / "glusterfs-testbed.sh"
PY = sys.executable
PROBE = Path(__file__).with_name("file_probe.py")
STATE_LOCK = Path("/run/modulatio-testbed.state.lock")
USERS_LOCK = Path("/run/modulatio-testbed.users.lock")
BED_DIR = Path(os.environ.get("TB_DIR", "/var/lib/glusterfs-testbed"))


class Unavailable(Exception):
    """The machine cannot have the bed (the reason is the message): tests skip."""


def unavailable() -> str | None:
    """Why this machine cannot run the bed, or None. Checked before anything is changed."""
    if not sys.platform.startswith("linux"):
        return f"the test bed needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the test bed needs root (network and mount namespaces, FUSE mounts)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"the kernel offers no FUSE here: /dev/fuse: {e.strerror}"
    for tool in ("unshare", "nsenter"):
        if not any(os.access(Path(d) / tool, os.X_OK) for d in os.get_exec_path()):
            return f"{tool} (util-linux) is missing"
    try:
        probe = subprocess.run(["unshare", "--net", "--mount", "--uts", "--pid", "--fork",
                                "true"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "unshare of new namespaces did not return in 20 s"
    if probe.returncode != 0:
        return f"the kernel refuses new namespaces: {probe.stderr.strip()}"
    return None


@dataclass
class HostProcess:
    """A command started on a host. `popen` is the nsenter process (outside the host);
    the command is its only child, in the same process group (a new session)."""

    host: str
    argv: list[str]
    popen: subprocess.Popen
    log_path: Path | None
    outer_pid: int = 0
    """The command's pid as this test sees it (0: it ended before it was seen)."""
    inner_pid: int = 0
    """Its pid on its host: what it writes into heartbeats, events and lock files."""

    def __post_init__(self) -> None:
        # The script execs nsenter, which forks the command into the host's PID namespace:
        # wait for that child (the script's own subshells come before the exec).
        deadline = time.monotonic() + 10
        pid = self.popen.pid
        while self.popen.poll() is None and time.monotonic() < deadline:
            try:
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                if kids and Path(f"/proc/{pid}/comm").read_text().strip() == "nsenter":
                    self.outer_pid = int(kids[0])
                    self.inner_pid = ns_pid(self.outer_pid)
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.002)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the command alone; nsenter then exits with its status."""
        if not self.outer_pid:
            raise ProcessLookupError(f"{self.argv} on {self.host} was never seen running")
        os.kill(self.outer_pid, sig)

    def kill(self) -> int:
        """SIGKILL the command and nsenter (the process group), and reap nsenter."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.popen.wait()

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def log(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def ns_pid(outer: int) -> int:
    """A process's pid in its own (innermost) PID namespace."""
    for line in Path(f"/proc/{outer}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return outer


def script(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess:
    """Run the bed script with `args`; its output is kept (and shown when it fails)."""
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise RuntimeError(f"glusterfs-testbed.sh {' '.join(args)}: exit {done.returncode}\n"
                           f"{done.stdout}{done.stderr}")
    return done


class Bed:
    def __init__(self, hosts: list[str], mount: Path):
        self.hosts = hosts
        self.mount = mount

    # --- where things are -------------------------------------------------------------

    def holder(self, host: str) -> int:
        """The pid (here) of the host's PID 1, which holds its namespaces and mount."""
        return int((BED_DIR / "run" / f"{host}.pid").read_text())

    def path(self, host: str, path: Path | str) -> Path:
        """`path` as `host` sees it (its mount namespace), usable from this process."""
        return Path(f"/proc/{self.holder(host)}/root") / Path(path).relative_to("/")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """This environment without MODULATIO_* (a test sets what it means), plus the
        permission the daemon needs to run as root (tests run as root in CI)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODULATIO_")}
        env["MODULATIO_ALLOW_ROOT"] = "1"
        env.update(extra or {})
        return env

    # --- commands on a host -----------------------------------------------------------------

    def run_on(self, host: str, *argv: str | Path, timeout: float = 60, check: bool = True,
               input: str | None = None, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run `argv` on `host` to its end; stdout and stderr are captured as text."""
        done = subprocess.run(["bash", str(SCRIPT), "run-on", host, *map(str, argv)],
                              capture_output=True, text=True, timeout=timeout, input=input,
                              env=self.env(env), cwd=cwd or REPO,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"on {host}: {list(map(str, argv))} exited "
                                 f"{done.returncode}\n{done.stdout}{done.stderr}")
        return done

    def modulatio(self, host: str, *args: str | Path, timeout: float = 120,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """`modulatio ARGS` on `host` (this checkout's), whatever its exit code."""
        return self.run_on(host, PY, "-m", "modulatio_d", *args, timeout=timeout,
                           check=False, env=env)

    def start(self, host: str, *argv: str | Path, log: Path | None = None,
              env: dict[str, str] | None = None) -> HostProcess:
        """Start `argv` on `host` in the background, stdout and stderr to `log`."""
        full = ["bash", str(SCRIPT), "run-on", host, *map(str, argv)]
        out = open(log, "ab") if log else subprocess.DEVNULL  # closed below, once Popen has it
        try:
            popen = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=self.env(env), cwd=REPO,
                                     start_new_session=True)
        finally:
            if log:
                out.close()
        return HostProcess(host, list(map(str, argv)), popen, log)

    def start_modulatio(self, host: str, *args: str | Path, log: Path | None = None,
                        env: dict[str, str] | None = None) -> HostProcess:
        return self.start(host, PY, "-m", "modulatio_d", *args, log=log, env=env)

    def start_daemon(self, host: str, vault: Path, *args: str, log: Path,
                     tick: float = 0.5, env: dict[str, str] | None = None) -> HostProcess:
        """`modulatio daemon --vault VAULT --tick-seconds TICK ARGS` on `host`."""
        return self.start_modulatio(host, "daemon", "--vault", vault, "--tick-seconds",
                                    str(tick), *args, log=log, env=env)

    # --- processes on a host ----------------------------------------------------------------

    def processes(self, host: str) -> list[int]:
        """Pids (here) of what runs on `host` beyond the bed's own processes (its PID 1,
        the GlusterFS client and PID 1's sleep): what tests started there."""
        holder = self.holder(host)
        ns = os.readlink(f"/proc/{holder}/ns/pid")
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == holder:
                continue
            try:
                if os.readlink(f"/proc/{name}/ns/pid") != ns:
                    continue
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                comm = Path(f"/proc/{name}/comm").read_text().strip()
            except OSError:
                continue
            if fields[0] in ("Z", "X"):
                continue
            if int(fields[1]) == holder and comm in ("glusterfs", "sleep"):
                continue
            found.append(int(name))
        return found

    def kill_all(self, host: str, sig: int = signal.SIGKILL) -> list[int]:
        """Signal every process tests started on `host`; with SIGKILL, wait until gone."""
        hit: list[int] = []
        for _ in range(50):
            pids = self.processes(host)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                    hit.append(pid)
                except ProcessLookupError:
                    pass
            if sig != signal.SIGKILL:
                break
            time.sleep(0.02)
        return sorted(set(hit))

    # --- the network and the volume ---------------------------------------------------------

    def cut(self, host: str) -> None:
        """Set the host's link down: it is cut off the server (and every other host)."""
        script("cut", host, timeout=30)

    def heal(self, host: str) -> None:
        script("heal", host, timeout=30)

    def volume_set(self, option: str, value: str) -> None:
        script("volume-set", option, value, timeout=60)

    def volume_reset(self, option: str) -> None:
        script("volume-reset", option, timeout=60)

    def volume_options(self, which: str) -> None:
        """The volume's cache options as a set: "default" (GlusterFS's) or "recommended"
        (docs/multi-host.md)."""
        script("volume-options", which, timeout=60)


# --- one bed per machine, shared by sessions --------------------------------------------------


class Probe:
    """file_probe.py on a host, reading commands: `do` sends one and waits for its answer."""

    def __init__(self, bed, host: str, folder: Path, env: dict[str, str] | None = None):
        self.host = host
        self.popen = subprocess.Popen(["bash", str(SCRIPT), "run-on", host, PY, str(PROBE),
                                       str(folder)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=bed.env(env),
                                      cwd=REPO, start_new_session=True)

    def send(self, *words: str) -> None:
        self.popen.stdin.write(" ".join(words) + "\n")
        self.popen.stdin.flush()

    def answer(self) -> str:
        return self.popen.stdout.readline().strip() or "no answer"

    def do(self, *words: str) -> str:
        self.send(*words)
        answer = self.answer()
        assert answer.startswith("ok"), f"on {self.host}: {words}: {answer}"
        return answer[3:]

    def close(self) -> None:
        self.popen.stdin.close()
        self.popen.wait(30)


class Session:
    """This session's use of the bed: `acquire` (up if needed), `release` (down if last)."""

    def __init__(self, hosts: int):
        self.n = hosts
        self.users_fd: int | None = None
        self.timings: dict[str, float] = {}

    def acquire(self, wait_s: float = 90) -> Bed:
        reason = unavailable()
        if reason:
            raise Unavailable(reason)
        start = time.monotonic()
        try:
            installed = script("install", timeout=wait_s, check=False)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"the GlusterFS packages were not installed within {wait_s:g} s: "
                              f"run `{SCRIPT} install` once, then the tests") from None
        if installed.returncode == 3:
            raise Unavailable("the GlusterFS packages cannot be installed: "
                              + (installed.stdout + installed.stderr).strip()[-500:])
        if installed.returncode != 0:
            raise RuntimeError(f"glusterfs-testbed.sh install: exit {installed.returncode}\n"
                               f"{installed.stdout}{installed.stderr}")
        self.timings["install"] = time.monotonic() - start
        state = _lock(STATE_LOCK, fcntl.LOCK_EX, wait_s)
        try:
            self.users_fd = os.open(USERS_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            first = _try(self.users_fd, fcntl.LOCK_EX)
            start = time.monotonic()
            if first:  # nobody uses the bed: whatever is there was left by a killed session
                script("down", timeout=120)
                self.timings["down_left"] = time.monotonic() - start
            up_start = time.monotonic()
            try:
                script("up", str(self.n), timeout=wait_s)
            except BaseException:
                if first:  # leave nothing half made behind, but the logs the error names
                    script("down", timeout=120, check=False, env={"TB_KEEP_LOGS": "1"})
                raise
            self.timings["up"] = time.monotonic() - up_start
            fcntl.flock(self.users_fd, fcntl.LOCK_SH)
        finally:
            os.close(state)
        mount = Path(os.environ.get("TB_MOUNT", "/mnt/vault-shared"))
        return Bed([f"h{k}" for k in range(1, self.n + 1)], mount)

    def release(self) -> None:
        if self.users_fd is None:
            return
        state = _lock(STATE_LOCK, fcntl.LOCK_EX, 120)
        try:
            if _try(self.users_fd, fcntl.LOCK_EX):  # the last user takes it down
                start = time.monotonic()
                script("down", timeout=120)
                self.timings["down"] = time.monotonic() - start
        finally:
            os.close(self.users_fd)
            self.users_fd = None
            os.close(state)


def _try(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _lock(path: Path, how: int, wait_s: float) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait_s
    while not _try(fd, how):
        if time.monotonic() > deadline:
            os.close(fd)
            raise RuntimeError(f"{path} stayed locked for {wait_s:g} s: another test session "
                               "on this machine is bringing the GlusterFS test bed up or down")
        time.sleep(0.1)
    return fd
