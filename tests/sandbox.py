"""Run hostile inputs in worker processes, each under a memory ceiling and a
per-case timeout, so that a case that would eat the machine or hang fails
its test instead.

A worker is a fresh (spawned) interpreter. It builds its check function
with ``setup(*args)`` (loading a checkpoint, say), sets ``RLIMIT_AS`` to its
address-space size at that point plus ``budget`` bytes, then runs cases one
at a time. A check returns an outcome string; anything it raises is a
failure. The parent kills a worker whose case runs past ``timeout`` seconds
and starts a fresh one for the next case; a worker that dies (a crash in C++
code, say) is replaced the same way.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import re
import resource
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

FAIL = "FAIL"  # prefix of every outcome that is a failure


def address_space() -> int:
    """This process's virtual memory size in bytes (``VmSize``)."""
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmSize:\s+(\d+) kB", fh.read()).group(1)) * 1024


def _serve(conn: multiprocessing.connection.Connection, setup: Callable, args: tuple, budget: int) -> None:
    check = setup(*args)
    limit = address_space() + budget
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(("ready", limit))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        index, case = msg
        try:
            outcome = check(case)
        except MemoryError:
            outcome = f"{FAIL} MemoryError (over the memory ceiling)"
        except Exception:
            outcome = f"{FAIL} {traceback.format_exc(limit=-8)}"
        conn.send((index, outcome))


@dataclass
class _Worker:
    process: Any
    conn: multiprocessing.connection.Connection
    case: Optional[int] = None
    started: float = 0.0


@dataclass
class Report:
    """Outcomes of a run, one per case, in case order."""

    outcomes: List[str]
    restarts: int = 0
    counts: Counter = field(default_factory=Counter)

    def failures(self) -> List[Tuple[int, str]]:
        return [(i, o) for i, o in enumerate(self.outcomes) if o.startswith(FAIL)]


def _start(setup: Callable, args: tuple, budget: int) -> _Worker:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(child, setup, args, budget), daemon=True)
    process.start()
    child.close()
    tag, _ = parent.recv()  # setup errors surface as EOFError here
    assert tag == "ready"
    return _Worker(process, parent)


def _stop(worker: _Worker) -> None:
    worker.process.kill()
    worker.process.join()
    worker.conn.close()


def run_cases(
    setup: Callable,
    args: tuple,
    cases: Sequence[Any],
    *,
    workers: int = 2,
    budget: int = 1 << 30,
    timeout: float = 120.0,
    label: Callable[[str], str] = lambda outcome: outcome.split(":")[0],
) -> Report:
    """Run every case in ``workers`` sandboxed processes; see the module docstring.

    ``timeout`` only detects hangs: it is far above what any case needs.
    """
    outcomes: List[Optional[str]] = [None] * len(cases)
    todo: Deque[int] = deque(range(len(cases)))
    pool = [_start(setup, args, budget) for _ in range(min(workers, len(cases)) or 1)]
    restarts = 0
    try:
        while todo or any(w.case is not None for w in pool):
            for w in pool:
                if w.case is None and todo:
                    w.case, w.started = todo.popleft(), time.monotonic()
                    w.conn.send((w.case, cases[w.case]))
            busy = {w.conn: w for w in pool if w.case is not None}
            ready = multiprocessing.connection.wait(list(busy), timeout=1.0)
            for conn in ready:
                w = busy[conn]
                try:
                    index, outcome = conn.recv()
                except EOFError:
                    w.process.join()
                    outcome, index = f"{FAIL} worker died (exit code {w.process.exitcode})", w.case
                    _replace(pool, w, setup, args, budget)
                    restarts += 1
                outcomes[index] = outcome
                w.case = None
            for w in list(pool):
                if w.case is not None and time.monotonic() - w.started > timeout:
                    outcomes[w.case] = f"{FAIL} no result within {timeout:.0f} s (a hang)"
                    _replace(pool, w, setup, args, budget)
                    restarts += 1
    finally:
        for w in pool:
            if w.process.is_alive():
                w.conn.send(None)
                w.process.join(timeout=10)
            _stop(w)
    done = [o or f"{FAIL} never ran" for o in outcomes]
    return Report(done, restarts, Counter(label(o) for o in done))


def _replace(pool: List[_Worker], worker: _Worker, setup: Callable, args: tuple, budget: int) -> None:
    _stop(worker)
    pool[pool.index(worker)] = _start(setup, args, budget)


def summary(report: Report, groups: Dict[str, range]) -> str:
    """Outcome counts per group of case indexes, for the test log."""
    lines = []
    for name, span in groups.items():
        counts = Counter(report.outcomes[i].split(":")[0] for i in span)
        lines.append(f"{name:>24} {len(span):5d}  " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    return "\n".join(lines)
