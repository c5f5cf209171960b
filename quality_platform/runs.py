"""Liveness of the platform's in-process runs: a killed run must not block every later run.

Runs execute in the process that launches them (:mod:`quality_platform.runner`). Each run records
that process in its tags (host, pid and the process's start time, so that a reused pid is not
taken for the original). A run still STARTING / STARTED / CANCELING whose process is gone (same
host; pid not alive, a zombie, or started at another time) is dead: :func:`reap_dead_runs` marks it
failed through the instance (the UI and its event log say why) and frees its concurrency slots in
every pool. The runner does this before every run and while a run waits for a pool slot;
``qp free-slots`` does it on demand. Runs launched by the daemon or the UI (no such tags) are left
to Dagster's run monitoring (dagster.yaml ``run_monitoring``).

While a run waits for a slot, Dagster's in-process executor polls in a loop that ignores the
SIGTERM / SIGINT it captured; :class:`SlotWatch` logs whom the run waits for and turns such a
signal into an interruption of the waiting run (cancelled, its queue place given back).
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import dagster as dg

log = logging.getLogger(__name__)

EXECUTOR_HOST_TAG = "qp/executor_host"
EXECUTOR_PID_TAG = "qp/executor_pid"
EXECUTOR_START_TAG = "qp/executor_start"
ACTIVE_STATUSES = (
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as ``<boot id>:<clock ticks since boot>`` (Linux), or None when
    the process does not exist or the platform does not say."""
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _proc_stat(pid)
    return not (fields and fields[0] in ("Z", "X"))  # a zombie has finished


def executor_tags() -> dict[str, str]:
    """Tags naming this process as the executor of a run it launches."""
    pid = os.getpid()
    return {
        EXECUTOR_HOST_TAG: socket.gethostname(),
        EXECUTOR_PID_TAG: str(pid),
        EXECUTOR_START_TAG: process_start(pid) or "",
    }


def executor_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process named by a run's executor tags still runs: None when the tags are missing
    or name another host (nothing can be said here), else True / False."""
    host, pid = tags.get(EXECUTOR_HOST_TAG), tags.get(EXECUTOR_PID_TAG)
    if not host or not pid or not pid.isdigit() or host != socket.gethostname():
        return None
    if not _pid_alive(int(pid)):
        return False
    recorded, now = tags.get(EXECUTOR_START_TAG), process_start(int(pid))
    return not (recorded and now is not None and recorded != now)  # the pid was reused


@dataclass(frozen=True)
class ReapedRun:
    """A run whose process had died, now failed with its slots freed."""

    run_id: str
    job: str
    status: str
    host: str
    pid: int
    pools: list[str] = field(default_factory=list)


def _pools_of(instance: dg.DagsterInstance) -> list[str]:
    storage = instance.event_log_storage
    return (
        sorted(storage.get_concurrency_keys()) if storage.supports_global_concurrency_limits else []
    )


def run_pools(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Pools in which the run holds a slot or waits for one."""
    out = []
    for pool in _pools_of(instance):
        info = instance.event_log_storage.get_concurrency_info(pool)
        if run_id in info.active_run_ids or any(p.run_id == run_id for p in info.pending_steps):
            out.append(pool)
    return out


def reap_dead_runs(instance: dg.DagsterInstance) -> list[ReapedRun]:
    """Fail every active run whose executing process is gone and free its slots in every pool."""
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(ACTIVE_STATUSES))):
        if executor_alive(dict(run.tags)) is not False:
            continue
        current = instance.get_run_by_id(run.run_id)  # another process may have reaped it meanwhile
        if current is None or current.status not in ACTIVE_STATUSES:
            continue
        host, pid = run.tags[EXECUTOR_HOST_TAG], int(run.tags[EXECUTOR_PID_TAG])
        pools = run_pools(instance, run.run_id)
        instance.report_run_failed(
            current,
            message=(
                f"The process that executed this run (pid {pid} on {host}) is gone: it was killed or crashed while "
                f"the run was {current.status.value}. Marked failed by pid {os.getpid()}, which freed its slots in "
                f"the pools {pools or '(none held)'}. Re-run the run's partitions (writes are idempotent)."
            ),
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log.warning(
            "run %s (%s) was %s but its process %s on %s is gone: marked failed, freed slots in %s",
            run.run_id,
            run.job_name,
            current.status.value,
            pid,
            host,
            pools,
        )
        reaped.append(ReapedRun(run.run_id, run.job_name, current.status.value, host, pid, pools))
    return reaped


@dataclass
class SlotRelease:
    """What :func:`free_slots` did: ``freed`` runs (finished or dead) lost their slots, ``active``
    runs keep theirs, in the ``pools`` of the instance."""

    pools: list[str]
    reaped: list[ReapedRun]
    freed: list[str]
    active: list[str]


def free_slots(instance: dg.DagsterInstance) -> SlotRelease:
    """Reap dead runs, then free the slots (every pool) of runs that are no longer running."""
    reaped = reap_dead_runs(instance)
    pools = _pools_of(instance)
    holders: set[str] = set()
    for pool in pools:
        info = instance.event_log_storage.get_concurrency_info(pool)
        holders |= {c.run_id for c in info.claimed_slots} | {p.run_id for p in info.pending_steps}
    freed, active = [r.run_id for r in reaped], []
    for run_id in sorted(holders - set(freed)):
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in ACTIVE_STATUSES:
            active.append(run_id)
        else:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            freed.append(run_id)
    return SlotRelease(pools, reaped, freed, active)


def _interrupt_main_thread() -> bool:
    """Raise KeyboardInterrupt in the main thread (where the run executes), as a signal would."""
    ident = threading.main_thread().ident
    if ident is None:
        return False
    return (
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
        )
        == 1
    )


class SlotWatch:
    """Watches a run executing in this process (a ``with`` block around the run's execution).

    While the run waits for a pool slot it logs, when the holders change and every minute, which
    runs (and processes) hold the slots; reaps dead holders (their process died after this run
    started); and when this process got SIGTERM / SIGINT, which Dagster captures and ignores while
    it waits, it cancels the run (its queue place is given back) and interrupts it; the runner then
    exits (:attr:`terminated`)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str,
        poll_s: float = 0.5,
        reap_every_s: float = 2.0,
        log_every_s: float = 60.0,
    ) -> None:
        self.instance, self.run_id = instance, run_id
        self.poll_s, self.reap_every_s, self.log_every_s = poll_s, reap_every_s, log_every_s
        self.terminated = False
        # Dagster captures signals only when the run executes in the main thread
        self._signals = threading.current_thread() is threading.main_thread()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"slot-watch-{run_id[:8]}", daemon=True
        )
        self._last_holders: tuple[Any, ...] | None = None
        self._logged_at = 0.0

    def __enter__(self) -> SlotWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _waiting_pools(self) -> dict[str, list[str]]:
        """Pools this run waits in (a step queued, none of its steps holding a slot there) -> holders."""
        out = {}
        for pool in _pools_of(self.instance):
            info = self.instance.event_log_storage.get_concurrency_info(pool)
            if self.run_id in info.pending_run_ids:
                out[pool] = sorted(info.active_run_ids - {self.run_id})
        return out

    def _describe(self, run_id: str) -> str:
        run = self.instance.get_run_by_id(run_id)
        if run is None:
            return f"{run_id} (unknown run)"
        pid, host = run.tags.get(EXECUTOR_PID_TAG), run.tags.get(EXECUTOR_HOST_TAG)
        where = f", pid {pid} on {host}" if pid else ""
        return f"{run_id} ({run.job_name}, {run.status.value}{where})"

    def _loop(self) -> None:
        from dagster._utils.interrupts import check_captured_interrupt

        next_reap = 0.0
        while not self._stop.wait(self.poll_s):
            try:
                now = time.monotonic()
                if self._signals and check_captured_interrupt() and self._terminate():
                    return
                if now < next_reap:
                    continue
                next_reap = now + self.reap_every_s
                waiting = self._waiting_pools()
                if not waiting:
                    continue
                if reap_dead_runs(self.instance):
                    continue
                holders = tuple(sorted((p, tuple(r)) for p, r in waiting.items()))
                if holders != self._last_holders or now - self._logged_at >= self.log_every_s:
                    self._last_holders, self._logged_at = holders, now
                    log.warning(
                        "run %s waits for a slot: %s",
                        self.run_id,
                        "; ".join(
                            f"pool {p} held by {', '.join(self._describe(r) for r in rs) or 'no run (queued behind others)'}"
                            for p, rs in holders
                        ),
                    )
            except Exception:  # the watch must never break the run it watches
                log.exception("watching run %s failed", self.run_id)

    def _terminate(self) -> bool:
        """On a captured SIGTERM / SIGINT: if the run only waits (no step holds a slot), cancel it."""
        waiting = self._waiting_pools()
        if not waiting or any(
            self.run_id in self.instance.event_log_storage.get_concurrency_info(p).active_run_ids
            for p in _pools_of(self.instance)
        ):
            return False  # a running step: Dagster raises the interrupt at its next checkpoint
        run = self.instance.get_run_by_id(self.run_id)
        if run is not None and run.status in ACTIVE_STATUSES:
            self.instance.report_run_canceling(
                run,
                message=(
                    f"Termination requested (SIGTERM/SIGINT to pid {os.getpid()}) while the run waited for a slot "
                    f"in {sorted(waiting)}: cancelled before any step ran."
                ),
            )
        log.warning(
            "run %s: termination requested while waiting for a slot in %s; cancelling it",
            self.run_id,
            sorted(waiting),
        )
        self.terminated = _interrupt_main_thread()
        return self.terminated
