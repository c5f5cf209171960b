"""Time axis of one simulated plant and the seeded random streams.

The simulated range of a plant is ``[local midnight of start, local midnight of start + days)``
in the plant's time zone. Readings lie on the UTC grid ``range_start + k * interval`` (local
midnights are whole UTC minutes, so this is the UTC minute grid), and production units tile the
same range in contiguous windows of one cycle time, identical for all machines of the plant.
A reading belongs to the local day of its timestamp, a unit to the local day its window starts.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * NS_PER_S


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator seeded by ``seed`` and a path of keys (plant, machine, stream, ...).

    Strings are hashed with CRC-32 (stable across processes, unlike ``hash``), so the draws of
    one machine do not depend on the other machines or on the scenario.
    """
    words = [int(seed)]
    for key in keys:
        words.append(zlib.crc32(key.encode("utf-8")) if isinstance(key, str) else int(key))
    return np.random.default_rng(np.random.SeedSequence(words))


def local_midnight_ns(day: dt.date, tz: str) -> int:
    """UTC epoch nanoseconds of the local midnight starting ``day`` in ``tz``."""
    ts = pd.Timestamp(day.year, day.month, day.day).tz_localize(
        tz, ambiguous=True, nonexistent="shift_forward"
    )
    return int(ts.as_unit("ns").value)


def to_local_ns(utc_ns: np.ndarray, tz: str) -> np.ndarray:
    """Naive local wall-clock time (as epoch-like nanoseconds) of UTC instants."""
    idx = pd.DatetimeIndex(np.asarray(utc_ns, dtype="datetime64[ns]")).tz_localize("UTC")
    return np.asarray(idx.tz_convert(tz).tz_localize(None).asi8, dtype=np.int64)


@dataclass(frozen=True)
class TimeGrid:
    """Readings grid, local days and unit windows of one plant."""

    tz: str
    dates: tuple[dt.date, ...]
    step_s: int
    steps_per_unit: int
    utc_ns: np.ndarray
    local_ns: np.ndarray
    midnight_ns: np.ndarray
    day_bounds: np.ndarray
    unit_start_ns: np.ndarray
    unit_day: np.ndarray
    unit_day_bounds: np.ndarray

    @property
    def n_steps(self) -> int:
        """Number of reading timestamps per machine."""
        return int(self.utc_ns.size)

    @property
    def n_units(self) -> int:
        """Number of production windows per machine."""
        return int(self.unit_start_ns.size)

    @property
    def cycle_ns(self) -> int:
        """Length of one production window in nanoseconds."""
        return self.steps_per_unit * self.step_s * NS_PER_S

    @property
    def unit_end_ns(self) -> np.ndarray:
        """Exclusive end of each production window."""
        return self.unit_start_ns + self.cycle_ns

    def step_index(self, t_ns: int) -> int:
        """Index of the first reading at or after ``t_ns`` (clamped to the grid)."""
        return int(np.searchsorted(self.utc_ns, t_ns, side="left"))

    def unit_index(self, t_ns: int) -> int:
        """Index of the first unit starting at or after ``t_ns``."""
        return int(np.searchsorted(self.unit_start_ns, t_ns, side="left"))

    def day_steps(self, day: int) -> slice:
        """Readings of local day ``day`` (index into ``dates``)."""
        return slice(int(self.day_bounds[day]), int(self.day_bounds[day + 1]))

    def day_units(self, day: int) -> slice:
        """Units whose window starts on local day ``day``."""
        return slice(int(self.unit_day_bounds[day]), int(self.unit_day_bounds[day + 1]))


def build_grid(
    tz: str, start: dt.date, days: int, interval_seconds: float, cycle_minutes: int
) -> TimeGrid:
    """The time grid of a plant in time zone ``tz`` over ``days`` local days from ``start``."""
    step_s = round(interval_seconds)
    if step_s <= 0 or abs(step_s - interval_seconds) > 1e-9:
        raise ValueError(
            f"reading_interval_seconds must be a whole number of seconds, got {interval_seconds}"
        )
    cycle_s = cycle_minutes * 60
    if cycle_s % step_s:
        raise ValueError(
            f"cycle time {cycle_minutes} min is not a multiple of the reading interval {step_s} s"
        )
    dates = tuple(start + dt.timedelta(days=i) for i in range(days))
    mids = np.array(
        [local_midnight_ns(d, tz) for d in (*dates, start + dt.timedelta(days=days))],
        dtype=np.int64,
    )
    step_ns = step_s * NS_PER_S
    n = int(-(-(mids[-1] - mids[0]) // step_ns))
    utc = mids[0] + np.arange(n, dtype=np.int64) * step_ns
    spu = cycle_s // step_s
    n_units = n // spu
    unit_start = utc[: n_units * spu : spu].copy()
    unit_day = (np.searchsorted(mids, unit_start, side="right") - 1).astype(np.int64)
    return TimeGrid(
        tz=tz,
        dates=dates,
        step_s=step_s,
        steps_per_unit=spu,
        utc_ns=utc,
        local_ns=to_local_ns(utc, tz),
        midnight_ns=mids,
        day_bounds=np.searchsorted(utc, mids, side="left"),
        unit_start_ns=unit_start,
        unit_day=unit_day,
        unit_day_bounds=np.searchsorted(unit_start, mids, side="left"),
    )
