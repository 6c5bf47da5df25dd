"""Write a soak in progress into its run's results.json, each sample encoded once.

Design note: a save runs in the load's thread (from the driver's progress callback), between two
turns of its loop, so nothing else touches the writer's state; and while it runs, the driver
sends nothing and the sampler's thread waits for the GIL. Writing every sample anew (the
generic ``Run.to_json`` then an indented ``json.dumps``) took 0.35 s for an hour of five
processes, and the seconds of load around each save dipped to half their rate. The samples only
ever grow while the soak runs, so each is encoded once, the first time it is saved, and each
save encodes the new ones, then joins the text of all of them into the document: an hour of
samples is a few megabytes of text to join and write. Each save is still a whole new file,
written atomically (:func:`harness.results.write_atomic`): a soak killed outright keeps the
last save whole.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing as t
from collections.abc import Sequence
from pathlib import Path

from harness import records
from harness.results import RESULTS_FILE, Run, Soak, write_atomic

__all__ = ["SoakWriter"]

# Stand-ins for the two series in the document, replaced by the text of their samples.
_SERIES = ("processes", "load")


class SoakWriter:
    """``writer(soak)`` writes ``run`` holding ``soak`` to ``run_dir``'s results.json (as
    :func:`harness.results.write` does), encoding only the samples it has not written before."""

    def __init__(self, run_dir: str | os.PathLike[str], run: Run) -> None:
        self.path = Path(run_dir) / RESULTS_FILE
        self.run = run
        self._encoded: dict[str, _Encoded] = {name: _Encoded() for name in _SERIES}

    def __call__(self, soak: Soak) -> None:
        holes = {name: f"\0{name}" for name in _SERIES}  # no JSON text of a sample holds a NUL
        shell = dataclasses.replace(soak, **t.cast(dict[str, t.Any], holes))
        text = json.dumps(self.run.replace(soaks=(shell,)).to_json(), indent=2, allow_nan=False)
        for name, hole in holes.items():
            samples = self._encoded[name].of(getattr(soak, name))
            text = text.replace(json.dumps(hole), f"[{', '.join(samples)}]", 1)
        write_atomic(self.path, text + "\n")


class _Encoded:
    """The JSON text of the samples of one series written so far."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.last: object = None  # the last sample encoded

    def of(self, samples: Sequence[object]) -> list[str]:
        """The text of every one of ``samples``, encoding those not seen before."""
        done = len(self.texts)
        if done > len(samples) or (done and samples[done - 1] is not self.last):
            self.texts, done = [], 0  # not the series written before, grown: encode it anew
        self.texts.extend(json.dumps(records.to_json(s), allow_nan=False) for s in samples[done:])
        self.last = samples[-1] if samples else None
        return self.texts
