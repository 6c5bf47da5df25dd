"""Run a soak: one server, a steady load for minutes, every server process sampled each second.

Design note: the load runs in the harness's main thread (one long :func:`harness.load.run_load`,
so keep-alive connections stay open the whole time, as they would in production); the sampler
(:mod:`harness.soak.sampler`) runs in a background thread and reads the server's processes with
psutil. The first ``warmup_s`` seconds are sampled and plotted but not judged: imports, caches,
allocator arenas and connection pools settle there. See :mod:`harness.soak.verdict` for the rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness.faults.verdict import split_statuses
from harness.load import run_load
from harness.protocol import DEFAULT_BACKEND
from harness.results import ServerInfo, Soak, median
from harness.runner import aimed_at
from harness.servers import group_members, live_server
from harness.verdict import Evidence

from .sampler import Sampler
from .verdict import RSS_GROWTH_LIMIT, judge_soak, trends

__all__ = ["SAVE_EVERY", "SoakInterrupted", "default_warmup", "run_soak"]

#: Seconds of samples between two saves of a soak in progress: what a soak killed outright
#: loses at most (more in a soak of hours, whose saves take longer: see ``run_soak``).
SAVE_EVERY = 10.0


class SoakInterrupted(KeyboardInterrupt):
    """A soak stopped before its end (Ctrl-C, SIGTERM): ``soak`` holds what was sampled until
    then, judged on it, so that the caller can keep it; the server is stopped."""

    def __init__(self, soak: Soak) -> None:
        super().__init__("soak interrupted")
        self.soak = soak


def default_warmup(seconds: float) -> float:
    """A third of the soak, at least 10 s and at most 180 s; never more than half of the soak.

    What settles in the warm-up: CPython's allocator, whose resident memory grows in 1 MiB
    arenas; measured here, a gunicorn-gevent worker of the correct core took about two minutes
    (some 25,000 requests) to settle on a busy 2-core machine. (The probe's own tables of recent
    tokens take all their memory at start-up: :class:`harness.probe.state.RecentTokens`.)
    """
    return round(min(180.0, max(10.0, seconds / 3.0), seconds / 2.0), 1)


def run_soak(
    mode: str,
    *,
    seconds: float,
    app: str,
    backend: str = DEFAULT_BACKEND,
    connections: str = "fresh",
    warmup_s: float | None = None,
    concurrency: int = 16,
    sleep_ms: float = 1.0,
    workers: int | None = None,
    threads: int | None = None,
    extra_args: Sequence[str] = (),
    mount: str | None = None,
    log_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    save: Callable[[Soak], object] | None = None,
    save_every: float = SAVE_EVERY,
) -> Soak:
    """Soak ``mode`` serving ``app`` on ``backend`` for ``seconds``; return the judged series.

    ``mount`` is the path prefix the app is served under (``--mount``; see
    ``ServerConfig.mount``): the app a dispatcher mounts there is the one the load checks.
    ``save`` is given the soak as sampled so far, judged on it, once the server is serving, then
    1, 2, 4, 8 and 16 s in (each twice as far in as the one before, until they are
    ``save_every`` seconds apart), then every ``save_every`` seconds, or twenty times as long
    as the last save took if that is
    longer (``ctxbench soak`` writes it to results.json, marked running, so that a soak killed
    outright keeps what it sampled until then)."""
    warmup = default_warmup(seconds) if warmup_s is None else warmup_s
    say = progress or (lambda text: None)
    with live_server(
        mode, app=app, backend=backend, workers=workers, threads=threads, extra_args=extra_args,
        mount=mount, log_dir=log_dir,
    ) as server:  # fmt: skip
        # A server whose group is one process serves requests in it: that process is a worker.
        single = len(group_members(server.pid)) == 1
        sampler = Sampler(server.pid, single_process=single)
        info = ServerInfo(effective=dict(server.effective), log=str(server.log_path))

        def judged(
            requests: int,
            errors: int,
            leaks: int,
            *,
            stopped: bool,
            evidence: tuple[Evidence, ...] = (),
            error_kinds: Mapping[str, int] | None = None,
        ) -> Soak:
            """The soak as sampled until now, judged on it (``stopped``: before its end)."""
            load, processes = tuple(sampler.load), tuple(sampler.processes)
            end = max((s.t for s in load), default=0.0 if stopped else seconds)
            process_trends = trends(processes, warmup, end)
            verdict, reason = judge_soak(process_trends, load)
            if stopped and end <= warmup:  # not that no process lived through it
                reason = (
                    f"stopped after {round(end, 1):g} s, inside its {warmup:g} s warm-up:"
                    " nothing was judged"
                )
            measured = [s.rps for s in load if warmup <= s.t and s.requests]
            return Soak(
                mode=mode,
                app=app,
                backend=backend,
                connections=connections,
                seconds=seconds,
                warmup_s=warmup,
                verdict=verdict,
                reason=reason,
                requests=requests,
                errors=errors,
                leaks=leaks,
                error_kinds=dict(sorted((error_kinds or {}).items())),
                rps=round(median(measured), 1),
                processes=processes,
                load=load,
                rss_limit=RSS_GROWTH_LIMIT,
                trends=tuple(process_trends),
                evidence=evidence,
                server=info,
            )

        # 1, 2, 4, 8 and 16 s in, then every save_every: a soak killed in its first seconds
        # keeps them too.
        wait = next_save = min(1.0, save_every)

        def on_progress(requests: int, errors: int, leaks: int) -> None:
            nonlocal next_save, wait
            sampler.progress(requests, errors, leaks)
            elapsed = time.monotonic() - sampler.started
            say(f"soak {mode} {elapsed:5.0f}/{seconds:g} s  requests {requests:,}"
                f"  errors {errors}  leaks {leaks}")  # fmt: skip
            if save is not None and elapsed >= next_save:
                save(judged(*sampler.totals, stopped=True))
                # It runs in the load's thread and grows with the samples (measured: 20 ms for
                # an hour of 5 processes, 70 ms for six hours; .saves): at most a twentieth of
                # the soak, on a disk however slow.
                took = time.monotonic() - sampler.started - elapsed
                next_save = elapsed + max(wait, 20 * took)
                wait = min(2 * wait, save_every)

        spec = aimed_at(
            server,
            concurrency=concurrency,
            duration=seconds,
            connections=connections,
            sleep_ms=sleep_ms,
            timeout=10.0,
            keep_latencies=False,
        )
        interrupted: KeyboardInterrupt | None = None
        sampler.start()
        try:
            if save is not None:  # from now on the run folder holds this soak, and keeps it
                save(judged(0, 0, 0, stopped=True))
            result = run_load(spec, on_progress)
        except KeyboardInterrupt as e:
            interrupted = e
        finally:
            sampler.stop()
    if interrupted is not None:
        # What was sampled until now is kept; the driver's evidence went with its run.
        raise SoakInterrupted(judged(*sampler.totals, stopped=True)) from interrupted
    return judged(
        result.requests,
        result.errors,
        result.leaks,
        stopped=False,
        evidence=tuple(result.evidence),
        error_kinds=split_statuses(result.error_kinds, result.statuses, {}),
    )
