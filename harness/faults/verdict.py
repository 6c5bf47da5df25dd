"""The verdict of a fault cell, from its counts (pure: no I/O).

The rules (issue 9), in the order they are checked:

1. every request sent is accounted for, as answered, an error of some kind, aborted on purpose or
   injected: otherwise ``lost``;
2. where the backend can leak (a negative control, per :mod:`harness.expectations`), leaks must
   be reported while the fault runs (``caught``) or the harness is blind (``missed``); where it
   cannot, any leak is ``LEAK``: a fault never turns into a reported leak on a correct stack;
3. the only errors are the kinds the fault explains (``reset`` when a worker dies mid-request,
   for example): otherwise ``errors``;
4. the fault really happened (a worker was killed and respawned, a client aborted, a hook
   raised): otherwise ``not exercised``;
5. once the fault stopped and the workers are back, the next requests, served by the surviving
   and the respawned workers, are clean, and reach a respawned worker where the fault replaces
   workers: otherwise ``residue`` (or ``not exercised``). A fault that lives in the server's
   arguments (recycle) never stops: the errors it explains are allowed there too, leaks never.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.protocol import FRAMEWORK_NAMES, app_observation_names
from harness.report.text import fmt_counts
from harness.results import AfterFault

if TYPE_CHECKING:
    from harness.verdict import Evidence

__all__ = ["ERROR_COLUMNS", "VERDICTS", "Tally", "judge", "split_statuses"]

#: Every verdict a fault cell can get, and what it means (the report's legend).
VERDICTS: dict[str, str] = {
    "ok": "every request accounted for, no leak, only expected errors, clean afterwards",
    "caught": (
        "a negative control's leaks were reported while the fault ran (or after it, for one that"
        " shows a leak only by chance)"
    ),
    "n/a": "the fault does not apply to this mode",
    # Of the framework's state where the storage cannot leak, or of the app's own (observe()):
    # "where none can happen" alone was untrue of an app that keeps a user in a module dict.
    "LEAK": (
        "a request saw another's state on the correct storage: the framework's, where it cannot"
        " leak, or the app's own (given to observe())"
    ),
    "missed": "a negative control that can leak here was not caught",
    "lost": "requests vanished from the counts",
    "errors": "errors of a kind this fault does not explain",
    "not exercised": "the fault did not happen, so the cell proves nothing",
    "residue": "the requests after the fault were not clean",
}

#: Error kinds with a name of their own in the faults table, in its column order.
ERROR_COLUMNS = ("reset", "refused", "timeout", "5xx")


def split_statuses(
    error_kinds: Mapping[str, int],
    statuses: Mapping[int, int],
    injected_outcomes: Mapping[str, int],
) -> Counter[str]:
    """The driver's error kinds with ``non-2xx`` split into ``5xx`` and ``other-status``.

    ``statuses`` counts every status received, the injected requests' too; those are taken out
    first (their outcomes are keyed by the status as a string).
    """
    rv: Counter[str] = Counter({k: v for k, v in error_kinds.items() if k != "non-2xx" and v})
    non_2xx = error_kinds.get("non-2xx", 0)
    if non_2xx:
        fives = sum(
            count - injected_outcomes.get(str(status), 0)
            for status, count in statuses.items()
            if status >= 500
        )
        fives = max(0, min(fives, non_2xx))
        if fives:
            rv["5xx"] += fives
        if non_2xx - fives:
            rv["other-status"] += non_2xx - fives
    return rv


@dataclass
class Tally:
    """The counts of a fault cell as its load rounds and hostile clients report them."""

    sent: int = 0
    accounted: int = 0
    answered: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    aborted: int = 0
    injected: int = 0
    injected_outcomes: Counter[str] = field(default_factory=Counter)
    leaks: int = 0
    #: Of ``leaks``, those of the framework's own state (every one counted, not only the kept
    #: evidence): the rest are of the app's own ``observe()`` state.
    framework_leaks: int = 0
    leaky_requests: int = 0

    def add_hostile(
        self, sent: int, counts: Mapping[str, int], evidence: Sequence[Evidence] = ()
    ) -> None:
        """Add hostile clients' outcomes, by kind, and every leak they saw (``evidence``)."""
        self.sent += sent
        for kind, count in counts.items():
            self.accounted += count
            if kind == "answered":
                self.answered += count
            elif kind == "aborted":
                self.aborted += count
            else:
                self.errors[kind] += count
        self.leaks += len(evidence)
        self.framework_leaks += sum(e.name in FRAMEWORK_NAMES for e in evidence)

    @property
    def lost(self) -> int:
        return self.sent - self.accounted


def judge(
    tally: Tally,
    *,
    can_leak: bool,
    expected_errors: frozenset[str],
    not_exercised: str | None,
    after: AfterFault | None,
    replaces_workers: bool,
    after_expected_errors: frozenset[str] = frozenset(),
    leaked: Collection[str] = (),
    chance: str | None = None,
) -> tuple[str, str]:
    """``(verdict, reason)`` for a fault cell; see the module docstring for the rules.
    ``after_expected_errors`` are the error kinds allowed in the clean load after the fault:
    none, unless the fault still acts there (:attr:`~harness.faults.base.Fault.persists`).
    ``leaked`` are the names of the observations in the cell's evidence, which name the app's own
    ``observe()`` state: where only that leaked (``tally.framework_leaks`` is 0), the leak is the
    app's bug, which the storage's traits say nothing of. ``chance`` says why a backend that
    can leak shows it only by chance (a race on a worker's first requests): no leak is then no
    blindness, and the cell is judged by the other rules."""
    if tally.lost:
        return "lost", (
            f"{tally.lost:,} of {tally.sent:,} requests sent are neither answered, errors, aborted"
            " nor injected"
        )
    if can_leak and tally.leaks:
        return "caught", f"{tally.leaks:,} leaking observations under the fault"
    if can_leak and chance is not None and after is not None and after.leaks:
        return "caught", f"{after.leaks:,} leaking observations after the fault"
    if can_leak and chance is None:
        return "missed", "the backend can leak here, and no leak was reported under the fault"
    if tally.leaks and not can_leak:
        own = app_observation_names(leaked)
        if own and not tally.framework_leaks:  # every leak is of the app's own state
            return "LEAK", (
                f"{tally.leaks:,} leaking observations of the app's own state ({', '.join(own)},"
                " given to observe()): the app keeps it where requests share it, a bug of the"
                " app's (the framework's storage cannot leak here)"
            )
        return "LEAK", f"{tally.leaks:,} leaking observations where none can happen" + (
            f" (the app's own state among them: {', '.join(own)})" if own else ""
        )
    unexpected = {k: v for k, v in tally.errors.items() if v and k not in expected_errors}
    if unexpected:
        allowed = ", ".join(sorted(expected_errors)) or "none"
        reason = f"unexpected errors: {_sorted_counts(unexpected)} (expected: {allowed})"
        if "other-status" in unexpected:  # not 2xx, not 5xx: an auth hook, a rate limiter
            reason += (
                "; a status that is neither 2xx nor 5xx is the app answering in the probe's"
                " place (README: Auth hooks and middleware)"
            )
        return "errors", reason
    if not_exercised is not None:
        return "not exercised", not_exercised
    if after is None:
        return "not exercised", "no clean load ran after the fault"
    after_unexplained = {
        k: v for k, v in after.errors.items() if v and k not in after_expected_errors
    }
    if after.leaks or after_unexplained:
        return "residue", (
            f"after the fault: {after.leaks:,} leaks, errors:"
            f" {_sorted_counts(after.errors) or 'none'} in {after.requests:,} requests"
        )
    if replaces_workers and after.respawned_reached == 0:
        return "not exercised", "the requests after the fault reached no respawned worker"
    still = {k: v for k, v in after.errors.items() if v}
    return "ok", (
        f"{tally.answered:,} answered, errors: {_sorted_counts(tally.errors) or 'none'};"
        f" afterwards {after.requests:,} clean requests on {after.survivors_reached} surviving and"
        f" {after.respawned_reached} respawned workers"
        + (f" (errors: {_sorted_counts(still)}, as the fault still acts)" if still else "")
    )


def _sorted_counts(counts: Mapping[str, int]) -> str:
    """``2 x reset, 1 x timeout``, by kind, as the run report writes error counts."""
    return fmt_counts(dict(sorted(counts.items())))
