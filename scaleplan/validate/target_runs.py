"""The runs at a validation's target: trained in populations, by several processes where asked, and recorded as
each population finishes, so that an interrupted validation resumes where it stopped (a 50-seed target grid is hours
on a CPU). A record written for another spec or target is refused, never mixed in: that would be a silently wrong grid.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from scaleplan.errors import InputError, ScaleplanError
from scaleplan.outputs import writing

Key = tuple[Any, ...]  # the recorded parameters' values, then the seed
IDENTITY = "# identity: "  # a record's first line: the JSON of the spec fingerprint and target its runs belong to


@dataclass(frozen=True)
class RunSource:
    """The objective that trains target runs here, and what a worker process needs to load its own."""

    objective: Any  # Objective
    spec: Any  # SweepSpec
    device: str | None


def read_runs(path: Path, params: tuple[str, ...]) -> dict[Key, float]:
    """The runs recorded in `path`: (params' values..., seed) -> held-out loss (inf where the run diverged). A last
    line without its newline (a write the kill interrupted) is not a run."""
    if not path.is_file():
        return {}
    text = _read_text(path, params)
    lines = [line for line in text.splitlines()[: None if text.endswith("\n") else -1] if not line.startswith("#")]
    try:
        return {(*(float(r[p]) for p in params), int(r["seed"])): float(r["loss"]) for r in csv.DictReader(lines)}
    except (KeyError, TypeError, ValueError, csv.Error) as exc:
        raise _not_a_record(path, params, str(exc)) from None


def _not_a_record(path: Path, params: tuple[str, ...], why: str) -> InputError:
    """The one-line error for a file at a record's path that is not a record of runs."""
    return InputError(f"{path}: not a record of runs ({', '.join(params)}, seed, loss): {why}; move it away (or delete it "
                      "to train its runs again)")


def _read_text(path: Path, params: tuple[str, ...]) -> str:
    """The record's text; bytes that are not UTF-8 (a file that is not a record) are a one-line InputError."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _not_a_record(path, params, f"byte {exc.start} is not UTF-8 text") from None


def _drop_torn_line(path: Path) -> None:
    """Cut a last line that lacks its newline (a write the kill interrupted), so that appends start a fresh line."""
    text = path.read_bytes()
    if text and not text.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(text.rfind(b"\n") + 1)


def _swap_in(path: Path, text: str) -> None:
    """Write a record whole: a kill mid-write leaves the old file (or none), never a legacy record cut short or an
    identity line without its header."""
    with writing(path, "run record") as part:
        part.write_text(text)


@dataclass(frozen=True)
class RunRecord:
    """Where a target's runs are recorded: a CSV of `params`, seed and loss (floats written exactly) whose first line
    (`# identity: {...}`) names the spec fingerprint and target the runs belong to."""

    path: Path
    params: tuple[str, ...]
    identity: dict[str, Any]

    def key(self, request: Any) -> Key:
        return (*(float(request.params[p]) for p in self.params), request.point.seed)

    def check(self) -> bool:
        """Refuse, writing nothing, a record of another spec or target or a file that is not a record: validate checks
        before its sweep, so that a refused validation trains and overwrites nothing. Returns whether a record names
        its spec and target (False: no record yet, or one written before records named theirs)."""
        if not self.path.is_file():
            return False
        first = _read_text(self.path, self.params).split("\n", 1)[0]
        if not first.startswith(IDENTITY):
            read_runs(self.path, self.params)  # a file that is not a record is refused, never adopted
            return False
        have, want = self._identity_of(first), json.loads(json.dumps(self.identity))
        if have != want:
            differ = ", ".join(k for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k))
            raise InputError(f"{self.path}: its runs were trained for another {differ or 'setup'} than this validation's; "
                             "move it away or use another --out")
        return True

    def _open(self, log: Callable[[str], None]) -> None:
        """Start the record (its identity line and header), or check an existing one: refuse a record of another spec
        or target, adopt one written before records named theirs, and cut a last line a kill tore."""
        line = IDENTITY + json.dumps(self.identity, sort_keys=True) + "\n"
        if not self.path.is_file():  # writing() makes its folder
            _swap_in(self.path, line + ",".join([*self.params, "seed", "loss"]) + "\n")
            return
        if not self.check():
            log(f"{self.path}: no record of the spec and target its runs belong to (written before scaleplan kept one); "
                "reusing them as this target's")
            _swap_in(self.path, line + _read_text(self.path, self.params))
        _drop_torn_line(self.path)

    def _identity_of(self, first: str) -> dict[str, Any]:
        """The JSON object on a record's identity line; a line without one is a one-line InputError."""
        try:
            identity = json.loads(first[len(IDENTITY):])
        except ValueError as exc:
            raise _not_a_record(self.path, self.params, f"its identity line is not JSON ({exc})") from None
        if not isinstance(identity, dict):
            raise _not_a_record(self.path, self.params, "its identity line is not a JSON object")
        return identity

    def train(self, source: RunSource, requests: list[Any], what: str, log: Callable[[str], None],
              workers: int = 1) -> dict[Key, float]:
        """Train the `requests` not yet recorded, appending each finished population; returns every recorded run.

        `what` starts the log lines (`[name] target batch 512: 10 lrs x 50 seeds`)."""
        self._open(log)
        done = read_runs(self.path, self.params)
        todo = [r for r in requests if self.key(r) not in done]
        k = max(1, source.objective.population_size(requests[0].point)) if requests else 1
        how = ("populations of " + str(k) if k > 1 else "one at a time") + (f", {workers} worker processes" if workers > 1 else "")
        log(f"{what} = {len(requests)} runs, {len(requests) - len(todo)} of them already in {self.path}; "
            f"{len(todo)} to train ({how})")
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            trained, shown = 0, 0
            for population in evaluate_in_populations(source, todo, k, f"{what}: training", workers):
                for request, loss in population:
                    done[self.key(request)] = loss
                    writer.writerow([*(repr(float(request.params[p])) for p in self.params), request.point.seed, repr(loss)])
                f.flush()
                trained += len(population)
                if trained * 10 // len(todo) > shown:  # every tenth of the runs, and the last
                    shown = trained * 10 // len(todo)
                    log(f"{what}: {trained}/{len(todo)} runs trained")
        return done


def evaluate_in_populations(source: RunSource, requests: list[Any], k: int, what: str,
                            workers: int = 1) -> Iterator[list[tuple[Any, float]]]:
    """Train `requests` through the spec's objective `k` at a time, in order; yields each population's (request,
    held-out loss), the loss inf where the run diverged. With `workers` > 1 the populations are trained by that many
    processes (each loads the objective; one core each on a CPU). A failing objective is one line: `what` failed: why."""
    from scaleplan.sweep.trial import ObjectiveFailed

    chunks = [requests[i : i + k] for i in range(0, len(requests), k)]
    pool = None
    if workers > 1 and len(chunks) > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(min(workers, len(chunks)), _load_worker, (source.spec, source.device))
        results: Iterator[list[Any]] = pool.imap(_evaluate_here, chunks)  # in order, trained ahead
    else:
        results = (source.objective.evaluate(chunk) for chunk in chunks)
    try:
        for chunk in chunks:
            try:
                outcomes = next(results)
            except ObjectiveFailed as exc:
                raise ScaleplanError(f"{what} failed: {exc}") from None
            yield [(request, math.inf if outcome.diverged or not math.isfinite(outcome.loss) else float(outcome.loss))
                   for request, outcome in zip(chunk, outcomes)]
    finally:
        if pool is not None:  # done, failed or interrupted: no worker trains on
            pool.terminate()
            pool.join()


_WORKER_OBJECTIVE: Any = None  # a worker process's own objective (_load_worker)


def _load_worker(spec: Any, device: str | None) -> None:
    global _WORKER_OBJECTIVE
    import signal

    from scaleplan.sweep.objective import load_objective
    from scaleplan.sweep.runner import die_with_parent, ignore_signal

    signal.signal(signal.SIGINT, ignore_signal)  # Ctrl-C reaches the whole group: the parent stops the pool, no tracebacks
    die_with_parent()  # an interrupted validation leaves no orphans training on
    _WORKER_OBJECTIVE = load_objective(spec, device)


def _evaluate_here(chunk: list[Any]) -> list[Any]:
    return list(_WORKER_OBJECTIVE.evaluate(chunk))
