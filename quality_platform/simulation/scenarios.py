"""Ground-truth scenarios: what goes wrong, where and from when.

Each scenario hits ONE plant (its preferred plant when simulated, else the first simulated plant
that maps the quantity involved); all other plants stay stable. The onset is local midnight of
``start + onset_day`` in the affected plant's time zone (``onset_day`` defaults to ``days // 2``,
clamped to ``[1, days - 1]``).

* ``stable`` - nothing happens.
* ``moisture_drift`` (plant_a) - the TRUE material moisture of all machines rises by 0.25 %/day
  from the onset (capped at +1.5 %), so the defect rate rises through the mechanism.
* ``sensor_offset`` (plant_b, 3rd machine) - the temperature sensor reads +8 degC (converted into
  the plant unit) from the onset; the true process and the defects are unchanged.
* ``stuck_sensor`` (plant_c, 2nd machine) - the vibration sensor repeats its last value from the
  onset; the true process is unchanged.
* ``missing_burst`` (plant_b) - a third of the machines (at least 1) send no readings for 3-5 h on
  the onset day (production and inspection go on).
* ``concept_drift`` (plant_c) - inputs unchanged; units starting at/after the onset follow
  :data:`~quality_platform.simulation.mechanism.CONCEPT_DRIFT_COEFFICIENTS`.
* ``bad_files`` - the stable data plus malformed files, see :mod:`.bad_files`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quality_platform.config import PlantConfig
from quality_platform.simulation.grid import (
    NS_PER_DAY,
    NS_PER_S,
    TimeGrid,
    local_midnight_ns,
    rng_for,
)

SCENARIOS: tuple[str, ...] = (
    "stable",
    "moisture_drift",
    "sensor_offset",
    "stuck_sensor",
    "missing_burst",
    "concept_drift",
    "bad_files",
)

#: scenario -> (preferred plant, quantity involved, machine index or None for plant-wide)
TARGETS: dict[str, tuple[str, str | None, int | None]] = {
    "moisture_drift": ("plant_a", "material_moisture", None),
    "sensor_offset": ("plant_b", "temperature", 2),
    "stuck_sensor": ("plant_c", "vibration", 1),
    "missing_burst": ("plant_b", None, None),
    "concept_drift": ("plant_c", None, None),
}
MOISTURE_DRIFT_PER_DAY = 0.25
MOISTURE_DRIFT_CAP = 1.5
SENSOR_OFFSET_CANONICAL = 8.0
INCIDENT_TYPES = {
    "moisture_drift": "process_drift",
    "sensor_offset": "sensor_fault",
    "stuck_sensor": "sensor_fault",
    "missing_burst": "missing_data",
    "concept_drift": "concept_drift",
}


@dataclass(frozen=True)
class ScenarioPlan:
    """The resolved scenario: affected plant, machines, quantity and onset."""

    name: str
    onset_day: int | None = None
    onset_date: dt.date | None = None
    plant: str | None = None
    machines: tuple[str, ...] = ()
    quantity: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def hits(self, plant_id: str) -> bool:
        """Whether this scenario changes plant ``plant_id``."""
        return self.plant is not None and self.plant == plant_id

    def onset_ns(self, tz: str) -> int:
        """UTC epoch nanoseconds of the onset (local midnight in ``tz``)."""
        assert self.onset_date is not None
        return local_midnight_ns(self.onset_date, tz)


def resolve_onset(days: int, onset_day: int | None) -> int:
    """Default ``days // 2``, clamped to ``[1, days - 1]``."""
    if days < 2:
        raise ValueError("scenarios with an onset need days >= 2")
    day = days // 2 if onset_day is None else int(onset_day)
    return min(max(day, 1), days - 1)


def _pick_plant(preferred: str, quantity: str | None, plants: dict[str, PlantConfig]) -> str:
    if preferred in plants and (
        quantity is None or quantity in plants[preferred].streams.readings.quantities
    ):
        return preferred
    for pid in sorted(plants):
        if quantity is None or quantity in plants[pid].streams.readings.quantities:
            return pid
    raise ValueError(f"no simulated plant maps quantity {quantity!r}")


def plan_scenario(
    name: str,
    plants: dict[str, PlantConfig],
    start: dt.date,
    days: int,
    onset_day: int | None,
    seed: int,
) -> ScenarioPlan:
    """Resolve ``name`` against the simulated ``plants`` (raises on unknown scenarios)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")
    if name in ("stable", "bad_files"):
        return ScenarioPlan(name=name)
    if not plants:
        raise ValueError(f"scenario {name!r} needs at least one simulated plant")
    preferred, quantity, machine_index = TARGETS[name]
    pid = _pick_plant(preferred, quantity, plants)
    machines = tuple(plants[pid].machines)
    day = resolve_onset(days, onset_day)
    onset_date = start + dt.timedelta(days=day)
    params: dict[str, Any] = {}
    if machine_index is not None:
        chosen: tuple[str, ...] = (machines[min(machine_index, len(machines) - 1)],)
    elif name == "missing_burst":
        rng = rng_for(seed, pid, "scenario", name)
        k = max(1, len(machines) // 3)
        idx = np.sort(rng.choice(len(machines), size=k, replace=False))
        chosen = tuple(machines[i] for i in idx)
        params = {"start_hour": int(rng.integers(6, 15)), "hours": int(rng.integers(3, 6))}
    else:
        chosen = machines
    if name == "moisture_drift":
        params = {"per_day": MOISTURE_DRIFT_PER_DAY, "cap": MOISTURE_DRIFT_CAP, "unit": "percent"}
    elif name == "sensor_offset":
        params = {"offset": SENSOR_OFFSET_CANONICAL, "unit": "degC"}
    return ScenarioPlan(
        name=name,
        onset_day=day,
        onset_date=onset_date,
        plant=pid,
        machines=chosen,
        quantity=quantity,
        params=params,
    )


def moisture_drift(plan: ScenarioPlan, grid: TimeGrid) -> np.ndarray:
    """Added true moisture per reading (percent), ``(N,)``: 0 before the onset."""
    elapsed = (grid.utc_ns - plan.onset_ns(grid.tz)) / NS_PER_DAY
    return np.clip(elapsed * plan.params["per_day"], 0.0, plan.params["cap"])


def missing_window(plan: ScenarioPlan, grid: TimeGrid) -> tuple[int, int]:
    """UTC ns ``[from, to)`` of the missing-data burst."""
    assert plan.onset_date is not None
    start = plan.onset_ns(grid.tz) + plan.params["start_hour"] * 3600 * NS_PER_S
    return start, start + plan.params["hours"] * 3600 * NS_PER_S
