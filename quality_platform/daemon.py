"""The Dagster daemon as the platform's orchestrator, started and stopped by a program.

``make ui`` runs the daemon next to the webserver (``dg dev``); the demo and the end-to-end test
start ``dagster-daemon run`` on the very ``workspace.yaml`` the UI loads, with this installation's
environment, let it do the work (the landing sensors pick up delivered files, the other sensors
follow), and stop it by its own process group. Nothing here launches a run or evaluates a sensor:
that is the daemon's job; this module only starts it, hands it files, and watches the instance.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import dagster as dg

from quality_platform.location import PROJECT_ROOT, WORKSPACE_FILE, sensor_origin
from quality_platform.partitions import RANGE_END, split_key

T = TypeVar("T")


class DaemonDied(RuntimeError):
    """The daemon process ended while it was still needed."""


class Daemon:
    """``dagster-daemon run -w workspace.yaml`` as a child process in its own process group
    (its code server and the run workers it launches are in that group too), logging to
    ``log_file``. ``env`` is the installation's environment (``QP_*``, ``DAGSTER_HOME``).

    Use as a context manager: the daemon is stopped (SIGTERM to its group, SIGKILL after
    ``stop_timeout`` seconds) however the block ends."""

    def __init__(self, log_file: Path, env: Mapping[str, str], stop_timeout: float = 60.0) -> None:
        self.log_file = log_file
        self.env = dict(env)
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).with_name("dagster-daemon")
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "run", "-w", str(WORKSPACE_FILE)],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """Stop the daemon and everything it started (its process group); its exit code."""
        if self.proc is None:
            return None
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive its leader by a moment (its code server, a run worker): killed,
        # and waited for until none is left
        deadline = time.monotonic() + 15.0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            while time.monotonic() < deadline:
                os.killpg(self.proc.pid, 0)
                time.sleep(0.2)
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(
            self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        )

    def wait_for(
        self,
        what: str,
        probe: Callable[[], T | None],
        timeout: float,
        poll: float = 2.0,
    ) -> T:
        """Poll ``probe`` until it returns something truthy (returned); raises ``TimeoutError``
        after ``timeout`` seconds and ``DaemonDied`` when the daemon ended, each with the tail of
        its log."""
        deadline = time.monotonic() + timeout
        while True:
            got = probe()
            if got:
                return got
            if not self.alive():
                raise DaemonDied(f"the daemon ended while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no {what} after {timeout:.0f} s; daemon log:\n{self.log_tail()}"
                )
            time.sleep(poll)


def deliver(src: Path, dest: Path) -> None:
    """Put a day folder of landing files in place at once: copied next to ``dest`` first, then
    renamed (atomic on one file system), so a sensor tick never sees half a day. The way a plant's
    transfer should write into the landing folder too."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    tmp.rename(dest)


def sensor_state(instance: dg.DagsterInstance, name: str) -> Any:
    """The stored state of this code location's sensor ``name`` (None before its first tick;
    a state an older origin of the same name left behind is not it)."""
    origin, selector_id = sensor_origin(name)
    return instance.get_instigator_state(origin.get_id(), selector_id)


def ticked_since(instance: dg.DagsterInstance, name: str, since: float) -> bool:
    """Whether sensor ``name`` completed a tick that started after ``since`` (epoch seconds)."""
    from dagster._core.scheduler.instigation import TickStatus

    state = sensor_state(instance, name)
    if state is None:
        return False
    for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5):
        if t.timestamp <= since:
            return False
        if t.status != TickStatus.STARTED:
            return True
    return False


def active_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Runs not finished yet (Dagster's own list: queued, starting, started, canceling ...)."""
    from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

    return list(instance.get_runs(dg.RunsFilter(statuses=NOT_FINISHED_STATUSES)))


def covered(
    instance: dg.DagsterInstance, job: str, plant: str, day: dt.date, after: float
) -> dg.DagsterRun | None:
    """A finished run of ``job`` created after ``after`` whose partition range ends at ``plant``'s
    ``day`` or later."""
    for r in instance.get_run_records(
        dg.RunsFilter(
            job_name=job,
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            created_after=dt.datetime.fromtimestamp(after, dt.UTC),
        )
    ):
        end = r.dagster_run.tags.get(RANGE_END)
        if end and split_key(end) >= (plant, day):
            return r.dagster_run
    return None


def settle(
    daemon: Daemon,
    instance: dg.DagsterInstance,
    sensors: list[str],
    timeout: float,
) -> float:
    """Wait until the loop has come to rest: no run is queued or running, and every sensor in
    ``sensors`` has ticked since the last run ended (so none of them has anything left to launch).
    Returns the time of rest (epoch seconds)."""

    def rest() -> float | None:
        if active_runs(instance):
            return None
        last = max([r.end_time or 0.0 for r in instance.get_run_records(limit=50)], default=0.0)
        if all(ticked_since(instance, s, last) for s in sensors):
            return time.time()
        return None

    return daemon.wait_for("rest (no active run, every sensor ticked since)", rest, timeout)
