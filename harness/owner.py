"""Who owns a run folder or a temporary folder: a process identity that survives pid reuse.

Design note: ctxbench killed outright (``kill -9``, the OOM killer, a machine put to sleep and
restarted) cannot clean up after itself. It leaves a results.json that says ``running``, perhaps
a temporary file of :func:`harness.results.write_atomic`, and the ``/tmp/ctxbench-<mode>-*``
folders of its servers (the server processes themselves die with it, see
:mod:`harness.servers._guard`). Whoever finds them later must tell a process still at work,
possibly a second ctxbench running at the same time, from one that is gone; only then may it
call a run abandoned or remove a file. A pid alone cannot tell: pids are reused. An
:class:`Owner` is the pid with the host name, the kernel's boot id and the process's start time
(clock ticks after boot, ``/proc/<pid>/stat``): the same three on the same host name the same
process.

:meth:`Owner.alive` says ``True``, ``False`` (provably gone) or ``None`` (cannot tell: another
host, or a recorded identity this system cannot check). Callers act only on ``False``.
:func:`owned_tempdir` makes a temporary folder that records its owner, :func:`sweep_tempdirs`
removes those whose owner is provably gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import records
from harness.errors import ResultsError

__all__ = [
    "OWNER_FILE",
    "TEMPDIR_PREFIX",
    "Owner",
    "disown",
    "file_tag",
    "owned_tempdir",
    "process_age",
    "sweep_tempdirs",
    "tag_gone",
]

#: The file in a temporary folder that names its owner (the folder is the owner's while it
#: lives); a folder without it is never swept.
OWNER_FILE = "owner.json"
#: Every temporary folder ctxbench makes starts with this (``ctxbench-gunicorn-gevent-...``).
TEMPDIR_PREFIX = "ctxbench-"

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Owner:
    """A process, named so that a later process with the same pid is not mistaken for it.

    ``boot_id`` and ``started`` are ``None`` where ``/proc`` is missing (not Linux).
    """

    host: str
    pid: int
    #: The kernel's boot id (``/proc/sys/kernel/random/boot_id``).
    boot_id: str | None = None
    #: The process's start time, in clock ticks after boot (``/proc/<pid>/stat``, field 22).
    started: int | None = None

    @classmethod
    def here(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        return cls(host=platform.node(), pid=pid, boot_id=_boot_id(), started=_start_ticks(pid))

    def alive(self) -> bool | None:
        """``False`` when this process is provably gone, ``True`` while it runs, ``None`` when
        this machine cannot tell (another host name, or no boot id or start time to check)."""
        if self.host != platform.node():
            return None
        boot = _boot_id()
        if self.boot_id is not None and boot is not None and self.boot_id != boot:
            return False  # the machine restarted since: every process of then is gone
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process holds the pid now
            pass
        if self.started is None or self.boot_id is None or boot is None:
            return None
        now = _start_ticks(self.pid)
        if now is None:  # it ended between the two looks, or is a zombie: gone either way
            return False if _BOOT_ID.exists() else None
        return now == self.started


def file_tag() -> str:
    """This process in a form fit for a file name: ``<boot id, 8 hex>-<pid>-<start ticks>``
    (:func:`harness.results.write_atomic` names its temporary files with it)."""
    me = Owner.here()
    return f"{(me.boot_id or 'noboot')[:8]}-{me.pid}-{me.started or 0}"


def tag_gone(tag: str) -> bool:
    """Whether the process a :func:`file_tag` names is provably gone: it ran since this boot
    (another boot id may be another host's, on a shared disk: not provable) and there is no
    such process now, or another one with its pid."""
    boot = _boot_id()
    parts = tag.split("-")
    if boot is None or len(parts) != 3 or parts[0] != boot[:8]:
        return False
    if not (parts[1].isdigit() and parts[2].isdigit()):
        return False
    owner = Owner(platform.node(), int(parts[1]), boot, int(parts[2]))
    return owner.alive() is False


def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks after boot; ``None`` if it is gone or a zombie
    (killed and not yet reaped: it runs no more), or where there is no ``/proc``."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = line[line.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of the whole line


def process_age(pid: int) -> float | None:
    """Seconds since process ``pid`` started; ``None`` when it is gone or there is no ``/proc``."""
    ticks = _start_ticks(pid)
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    return None if ticks is None else uptime - ticks / os.sysconf("SC_CLK_TCK")


def owned_tempdir(prefix: str) -> Path:
    """A new folder in the system's temporary folder, ``<prefix>XXXXXXXX``, that records this
    process as its owner (:data:`OWNER_FILE`), so that :func:`sweep_tempdirs` can remove it
    once this process is gone without having removed it itself."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    owner = Owner.here()
    with contextlib.suppress(OSError):  # without the record the folder is never swept
        (path / OWNER_FILE).write_text(json.dumps(records.to_json(owner)), encoding="utf-8")
    return path


def disown(path: Path) -> None:
    """Keep ``path`` for good: remove its owner record, so no sweep ever removes it (a failed
    start keeps the server log its error message points to)."""
    with contextlib.suppress(OSError):
        (path / OWNER_FILE).unlink()


def sweep_tempdirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the ctxbench temporary folders in ``root`` (the system's temporary folder) whose
    owner is provably gone; return them. A folder without an owner record, with one this
    machine cannot check, or owned by a live process (another ctxbench running now) stays."""
    base = Path(root if root is not None else tempfile.gettempdir())
    removed = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(TEMPDIR_PREFIX)]
    except OSError:
        return []
    for path in candidates:
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue  # not a folder, or another user's
        owner = _read_owner(path / OWNER_FILE)
        if owner is not None and owner.alive() is False:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _read_owner(path: Path) -> Owner | None:
    try:
        return records.from_json(Owner, json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError, ResultsError):
        return None
