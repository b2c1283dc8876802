"""Every file operation on the vault: beneath its root descriptor, never through a link.

Protocol:
1. A `Vault` registers its root (`register`): the folder is opened once, as an
   O_PATH descriptor, when first used. Every path the store, the daemon and
   the commands touch is absolute and built from that root (`vault.root /
   ...`), so it names its root: `opening.locate` turns it into a path relative to the
   longest registered root, lexically (no name of the vault may be `..`).
2. A relative path is opened with openat2(root_fd, rel, RESOLVE_BENEATH |
   RESOLVE_NO_SYMLINKS): a symbolic link anywhere in it, the last component
   included, fails with ELOOP in the kernel, and a climb out with EXDEV, so a
   link planted between a check and a use redirects nothing. Where openat2 is
   missing (ENOSYS: Linux before 5.6, some seccomp filters) the same is done by
   a walk: openat(O_PATH | O_DIRECTORY | O_NOFOLLOW) per folder, then the last
   component with O_NOFOLLOW. openat2 is syscall 437 on every architecture
   (x86_64, aarch64, arm, i386...: the syscall numbers from 424 up are shared).
3. What changes a folder (mkdir, rename, the exchange of atomic writes,
   unlink, the O_EXCL publish of a new file, temp files) is done by name on a
   descriptor of the folder opened as in 2 (mkdirat, renameat2, unlinkat,
   linkat): nothing is created, renamed or removed through a linked folder.
   One such descriptor may serve several changes in a row (`Folder`: a
   rewrite's temp file, reads by name, exchange, fsync and unlink), the
   names in it opened with O_NOFOLLOW and checked as in 4 and 5; what is odd
   there (a link, a missing name) is asked again of the walk from the root.
4. Reads open with O_NONBLOCK (a FIFO never blocks, a signal is never kept
   waiting) and O_NOCTTY, then fstat, and refuse what is not a regular file,
   a file with more than one hard link (it may be a file outside the vault,
   linked in), and a file over its kind's limit (LIMITS): the size is checked
   before reading and at most limit + 1 bytes are read, so a file that grows
   while read is refused too. Logs (usage, events) are read line by line, up
   to the size they had when opened, each line capped.
5. Writes open the same way (appends with O_APPEND, one write() per record)
   and refuse the same files; `open_regular` hands out such a descriptor (lock
   files, the pid file, a step's log).
6. Modes come from the umask: new files ask 0o666 and folders 0o777, the
   kernel masks them, and a setgid folder gives its group. A caller may cap a
   file's mode (a step's log and usage are never more readable than the plan).
A path beneath no registered root (the `metrics --output` file, tests of one
module) is opened beneath its own parent folder, which is followed as the
caller named it; its last component never is.

Errors: a link, a non-regular file, a hard-linked file or one over its limit
is `Refused`, a BadFile and an OSError at once: readers report it as a bad
file, writers that survive I/O errors (events, heartbeats) survive it too. A
missing file is FileNotFoundError, as from open(). Closing a descriptor
(`close`) never fails but on one that is not ours (EBADF): what a network
client answers there is let pass (closing.py says why).
"""

from __future__ import annotations

from modulatio_d.store.fs import appending, closing, opening, reading, writing
from modulatio_d.store.fs.appending import append
from modulatio_d.store.fs.closing import close
from modulatio_d.store.fs.opening import (
    LIMITS,
    Refused,
    Root,
    check_folder,
    check_regular,
    open_folder,
    register,
)
from modulatio_d.store.fs.reading import (
    Entry,
    Snapshot,
    each_entry,
    entries,
    exists,
    lines,
    lstat_at,
    names,
    open_at,
    read,
    read_opened,
    signature,
    stat_of,
    tail,
)
from modulatio_d.store.fs.writing import (
    Folder,
    exchange,
    folder_cap,
    fsync_dir,
    mkdirs,
    mode_of,
    move,
    open_regular,
    open_temp,
    publish,
    pwrite_all,
    rename,
    rename_new,
    temp,
    unlink,
)

__all__ = [
    "LIMITS", "Entry", "Folder", "Refused", "Root", "Snapshot", "append", "appending",
    "check_folder", "check_regular", "close", "closing", "each_entry", "entries",
    "exchange", "exists",
    "folder_cap", "fsync_dir", "lines", "lstat_at", "mkdirs", "mode_of", "move", "names",
    "open_at", "open_folder", "open_regular", "open_temp", "opening", "publish",
    "pwrite_all", "read", "read_opened", "reading", "register", "rename", "rename_new",
    "signature", "stat_of", "tail", "temp", "unlink", "writing",
]
