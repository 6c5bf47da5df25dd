"""The run folder: where one run writes its results.json, its servers' logs and its reports.

A run gets a new folder under ``--out`` (:func:`new_run_dir`) or writes into the ``--run-dir``
it was given, which may hold an earlier run (:func:`replacing_earlier_run`); :func:`run_dir_for`
puts the pieces together for a command. Either way:

- one run at a time writes into it: :func:`hold_run_dir` locks the folder for the run, so a
  second run given the same folder stops instead of writing over the first one's files;
- a run that fails before it wrote results.json leaves nothing it made, and never removes what
  was there (:func:`cleaned_up_on_failure`), but for the log a server that did not start points
  to;
- a run that wrote results.json keeps everything: what it measured is in them.

The files themselves are written by :mod:`harness.results` (results.json) and
:mod:`harness.report` (the reports); their names are theirs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import secrets
import shutil
import typing as t
from pathlib import Path

from harness.benchdata import CALIBRATION_FILE, MICRO_FILE
from harness.errors import ResultsError, ServerStartError, UsageError
from harness.results import LOGS, RESULTS_FILE

__all__ = [
    "cleaned_up_on_failure",
    "hold_run_dir",
    "new_run_dir",
    "new_run_id",
    "outermost_missing",
    "replacing_earlier_run",
    "run_dir_for",
]


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable run id: ``YYYYmmdd-HHMMSS-xxxxxx`` (local time, 6 random hex digits).
    :func:`new_run_dir` makes it unique in its folder."""
    now = now or dt.datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def run_dir_for(
    run_dir: str | os.PathLike[str] | None, out: str | os.PathLike[str], prefix: str = ""
) -> t.Iterator[Path]:
    """The folder a run writes into, for the block: ``run_dir`` itself (``--run-dir``), where an
    earlier run's files are replaced (:func:`replacing_earlier_run`), or without it a new folder
    under ``out`` (``--out``, :func:`new_run_dir`). It is made here, with the folders above it
    that are not there, and held for the block (:func:`hold_run_dir`); if the block fails before
    it wrote results, what was made for it is removed (:func:`cleaned_up_on_failure`). A folder
    that cannot be made is a :class:`UsageError` naming the option.
    """
    option, folder = ("--out", Path(out)) if run_dir is None else ("--run-dir", Path(run_dir))
    _check_folder(option, folder)
    created = outermost_missing(folder)
    try:
        with _creating(option, folder):
            folder.mkdir(parents=True, exist_ok=True)
            if run_dir is None:
                folder = new_run_dir(folder, prefix)
                created = created or folder
    except BaseException:
        if created is not None:
            _remove_made(folder, created, keep_files=False)
        raise
    # Held before anything is cleaned up on failure: a run stopped because another run holds the
    # folder removes nothing of that run's.
    with hold_run_dir(folder), contextlib.ExitStack() as stack:
        if run_dir is not None:
            stack.enter_context(replacing_earlier_run(folder))  # or refusing another folder
        stack.enter_context(cleaned_up_on_failure(folder, created))
        yield folder


def new_run_dir(out: Path, prefix: str = "") -> Path:
    """A new run folder ``out/<prefix><run id>`` in the folder ``out``, made here.

    The folder is made with an exclusive ``mkdir``: a run whose id names a folder already there
    (another run's, started in the same second with the same random part) draws again.
    """
    while True:
        run_dir = out / f"{prefix}{new_run_id()}"
        try:
            run_dir.mkdir()
        except FileExistsError:  # a run started in the same second drew the same id
            continue
        return run_dir


def _check_folder(option: str, path: Path) -> None:
    """A folder ctxbench will create files in: not a file, under a writable existing parent."""
    with _creating(option, path):
        if path.exists() and not path.is_dir():
            raise UsageError(f"bad {option} {str(path)!r}: it is a file, not a folder")
        parent = path
        while not parent.exists():
            parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"bad {option} {str(path)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"bad {option} {str(path)!r}: {str(parent)!r} is not writable")


@contextlib.contextmanager
def _creating(option: str, path: Path) -> t.Iterator[None]:
    """Looking at or creating the folder ``path`` of ``option``: what the system refuses there
    (a name too long, a read-only or virtual file system such as /proc, which root's access
    check passes, a full disk) is the user's to fix, in one line."""
    try:
        yield
    except OSError as e:
        raise UsageError(
            f"bad {option} {str(path)!r}: cannot create a folder there"
            f" ({e.strerror or e}); give a folder you can write to"
        ) from None


@contextlib.contextmanager
def hold_run_dir(run_dir: str | os.PathLike[str]) -> t.Iterator[None]:
    """Hold the run folder ``run_dir`` for one run, for the block: an exclusive lock on the
    folder itself (``flock``, which the kernel releases when the holder ends, however it ends).

    Two runs into one folder (two CI jobs given the same ``--run-dir``) would each write
    results.json and the servers' logs over the other's, and both report the same file as
    theirs: the second stops instead, in one line (:class:`ResultsError`, exit status 2). A file
    system that cannot lock (some network mounts) runs unguarded, as before.
    """
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResultsError(
                f"bad --run-dir {str(run_dir)!r}: another ctxbench run is writing into that"
                " folder now; give each run a folder of its own (--out DIR makes a new one per"
                " run), or wait until that run ends"
            ) from None
        except OSError:  # no locks here (ENOLCK, EOPNOTSUPP): nothing to tell, so no guard
            pass
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def cleaned_up_on_failure(run_dir: str | Path, created: Path | None = None) -> t.Iterator[None]:
    """For a block that fills the run folder ``run_dir``: if it fails before it wrote
    ``results.json``, remove what it made, and nothing else.

    What the block made is the outermost folder of ``run_dir`` (itself or one above it) that was
    not there (``results/`` itself on a first run; ``created`` when the caller made it just
    before, to hold it): ``run_dir`` goes, and the folders above it up to that one while they are
    empty. In a folder that was there already (``--run-dir DIR``) it is the entries that were
    not there. A
    :class:`ServerStartError` keeps the log it points to (and the folders holding it); any other
    error (a bad app path, Ctrl-C) leaves nothing. A run that wrote results keeps everything:
    what it measured is in them.
    """
    run_dir = Path(run_dir)
    if created is None:
        created = outermost_missing(run_dir)
    before: frozenset[str] | None = frozenset()
    if created is None:
        try:
            before = frozenset(p.name for p in run_dir.iterdir())
        except OSError:  # unreadable: nothing of it can be told apart, so nothing is removed
            before = None
    written = _results_stamp(run_dir)
    try:
        yield
    except BaseException as e:
        if _results_stamp(run_dir) == written:
            keep_files = isinstance(e, ServerStartError)
            if created is not None:
                _remove_made(run_dir, created, keep_files=keep_files)
            elif before is not None:
                for path in _made_in(run_dir, before):
                    _remove(path, keep_files=keep_files)
        raise


@contextlib.contextmanager
def replacing_earlier_run(run_dir: Path, option: str = "--run-dir") -> t.Iterator[None]:
    """For a block that writes a run into ``run_dir``, a folder an earlier run may have written:
    once the block has written its results (however it ends), remove the earlier run's logs
    that this one did not write again (a log of a mode this run does not measure read as this
    run's). The earlier results and reports stay until this run's replace them, and all of it
    when this run writes none (it stopped first).

    First, a folder that holds files that are not a run's is a :class:`UsageError`: its
    report.md would be replaced and its SVG files removed (hidden files and the benchmarks'
    JSON, :mod:`harness.benchdata`, which the report reads, are not counted). A run's files
    without its results.json are not a run's either (a folder's own ``report.md``), but for a
    ``logs`` folder of server logs alone: what a run stopped before its results (``kill -9``
    in its first cell) leaves, and the same command, run again, must not be refused.
    """
    from harness.report import REPORT_FILES  # the report package: loaded only where it is used

    logs = run_dir / LOGS
    outputs = {RESULTS_FILE, *REPORT_FILES, LOGS}
    names = sorted(
        p.name
        for p in run_dir.iterdir()
        if not p.name.startswith(".") and p.name not in (MICRO_FILE, CALIBRATION_FILE)
    )
    others = [n for n in names if n not in outputs and not n.endswith(".svg")]
    stopped = names == [LOGS] and all(p.suffix == ".log" for p in logs.rglob("*") if not p.is_dir())
    if names and (others or not (RESULTS_FILE in names or stopped)):
        listed = ", ".join(map(repr, (others or names)[:3])) + ", ..." * (len(others or names) > 3)
        raise UsageError(
            f"bad {option} {str(run_dir)!r}: it holds files that are no ctxbench run's"
            f" ({listed}), which a run would replace or remove; give an empty folder, or a new"
            " one (--out DIR makes one per run)"
        )
    earlier = {log: _stamp(log) for log in logs.rglob("*") if log.is_file()}
    written = _results_stamp(run_dir)
    try:
        yield
    finally:
        if _results_stamp(run_dir) != written:
            for log, stamp in earlier.items():
                if _stamp(log) == stamp:
                    log.unlink()
            for folder in sorted(logs.glob("**/"), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):  # not empty: this run's logs are in it
                    folder.rmdir()


def outermost_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder`` (itself or a parent) that is not there, else None."""
    return next((p for p in reversed((folder, *folder.parents)) if not p.exists()), None)


def _remove_made(run_dir: Path, created: Path, *, keep_files: bool) -> None:
    """Remove ``run_dir`` (only its empty folders with ``keep_files``), then the folders above it
    up to ``created``, which was made for it, while they are empty: another run may have made
    its own folder in them meanwhile."""
    with contextlib.suppress(OSError):  # never made (a name too long): nothing of it to remove
        _remove(run_dir, keep_files=keep_files)
    for folder in run_dir.parents:
        if not folder.is_relative_to(created):
            break
        try:
            folder.rmdir()
        except FileNotFoundError:  # never made: the failure came first
            continue
        except OSError:  # not empty: the log of a failed start, another run's folder
            break


def _made_in(folder: Path, before: frozenset[str]) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.name not in before]
    except OSError:  # removed meanwhile: nothing of it left to remove
        return []


def _results_stamp(run_dir: Path) -> tuple[int, int] | None:
    """What tells a rewritten ``results.json`` from the one there before (None: none)."""
    return _stamp(run_dir / RESULTS_FILE)


def _stamp(path: Path) -> tuple[int, int] | None:
    """What tells a rewritten file from the one there before (None: none)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _remove(path: Path, *, keep_files: bool) -> None:
    """Remove ``path``, or only its empty folders (deepest first) with ``keep_files``."""
    if path.is_symlink() or not path.is_dir():
        if not keep_files:
            path.unlink(missing_ok=True)
        return
    if not keep_files:
        shutil.rmtree(path, ignore_errors=True)
        return
    for folder in sorted([path, *path.glob("**/")], key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:  # not empty (the log), or gone already
            continue
