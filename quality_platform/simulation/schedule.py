"""Production schedule of one plant: lines, material lots, products, operators and unit ids.

* Lines: the first half of the configured machines (rounded up) is line ``L1``, the rest ``L2``.
* Material lots: each line consumes one lot at a time; a lot lasts 3-6 h (whole unit windows, so
  every unit has exactly one lot) and comes from one supplier. Its moisture is
  ``supplier mean + N(0, 0.6)`` percent - the main driver of the defect mechanism.
* Products: product campaigns of 8-16 h per machine, product drawn uniformly.
* Operators: a pool of 20 badge ids per plant; shifts of 8 h from 06:00 local time, each shift a
  crew drawn from the pool, one operator per two machines. Operator ids are personal data; they
  have no effect on quality and never appear in ``truth.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from quality_platform.simulation.grid import NS_PER_S, TimeGrid, rng_for
from quality_platform.simulation.styles import PlantStyle

LOT_MOISTURE_SD = 0.6


@dataclass(frozen=True)
class Production:
    """The units of one plant: arrays are ``(machines, units)`` unless said otherwise."""

    machines: tuple[str, ...]
    line_of_machine: np.ndarray  # (M,) 0 = L1, 1 = L2
    line_names: tuple[str, ...]
    lot_of_unit: np.ndarray  # (lines, U) index into lot_ids
    lot_ids: tuple[str, ...]
    lot_supplier: np.ndarray  # (lots,) index into style.suppliers
    lot_moisture: np.ndarray  # (lots,) percent
    product: np.ndarray  # (M, U) index into style.products
    operator: np.ndarray  # (M, U) index into operator_pool
    operator_pool: tuple[str, ...]
    unit_ids: np.ndarray  # (M, U) object
    units_in_batch: np.ndarray  # (M, U) int

    def machine_lots(self) -> np.ndarray:
        """Lot index per machine and unit, ``(M, U)``."""
        return self.lot_of_unit[self.line_of_machine]


def machine_short_names(machines: tuple[str, ...]) -> list[str]:
    """Short machine names for unit ids: the part after the last '-' when unique, else M01..."""
    short = [m.rsplit("-", 1)[-1] for m in machines]
    if len(set(short)) != len(short) or not all(short):
        short = [f"M{i + 1:02d}" for i in range(len(machines))]
    return short


def _runs(rng: np.random.Generator, n_units: int, lo: int, hi: int) -> np.ndarray:
    """Lengths (in units) of consecutive runs, each in [lo, hi], covering ``n_units``."""
    lengths: list[int] = []
    total = 0
    while total < n_units:
        step = int(rng.integers(lo, hi + 1))
        lengths.append(step)
        total += step
    return np.asarray(lengths, dtype=np.int64)


def _hours_to_units(hours: tuple[float, float], cycle_minutes: int) -> tuple[int, int]:
    lo = max(1, math.ceil(hours[0] * 60 / cycle_minutes))
    hi = max(lo, math.floor(hours[1] * 60 / cycle_minutes))
    return lo, hi


def build_production(
    plant_id: str, machines: tuple[str, ...], grid: TimeGrid, style: PlantStyle, seed: int
) -> Production:
    """Draw the production schedule of one plant (deterministic in ``seed``)."""
    n_m, n_u = len(machines), grid.n_units
    n_l1 = (n_m + 1) // 2
    line_of_machine = np.array([0 if i < n_l1 else 1 for i in range(n_m)], dtype=np.int64)
    n_lines = int(line_of_machine.max()) + 1
    line_names = tuple(f"L{i + 1}" for i in range(n_lines))

    # Material lots per line, numbered in order of their start across the plant.
    lo, hi = _hours_to_units(style.lot_hours, style.cycle_minutes)
    starts: list[tuple[int, int]] = []  # (start unit, line)
    runs_per_line = []
    for line in range(n_lines):
        runs = _runs(rng_for(seed, plant_id, "lots", line), n_u, lo, hi)
        runs_per_line.append(runs)
        starts += [(int(s), line) for s in np.concatenate([[0], np.cumsum(runs)[:-1]])]
    order = {key: i for i, key in enumerate(sorted(starts))}
    lot_of_unit = np.zeros((n_lines, n_u), dtype=np.int64)
    for line, runs in enumerate(runs_per_line):
        begin = np.concatenate([[0], np.cumsum(runs)[:-1]])
        numbers = np.array([order[(int(b), line)] for b in begin], dtype=np.int64)
        lot_of_unit[line] = np.repeat(numbers, runs)[:n_u]
    n_lots = len(starts)
    lot_supplier = rng_for(seed, plant_id, "lot_supplier").integers(
        0, len(style.suppliers), size=n_lots
    )
    supplier_mean = np.array([s.moisture for s in style.suppliers])
    lot_moisture = supplier_mean[lot_supplier] + rng_for(seed, plant_id, "lot_moisture").normal(
        0.0, LOT_MOISTURE_SD, size=n_lots
    )
    first_lot = int(rng_for(seed, plant_id, "lot_number").integers(100, 50_000))
    lot_ids = tuple(style.lot_format.format(first_lot + k) for k in range(n_lots))

    # Product campaigns per machine.
    clo, chi = _hours_to_units(style.campaign_hours, style.cycle_minutes)
    product = np.zeros((n_m, n_u), dtype=np.int64)
    batch = np.zeros((n_m, n_u), dtype=np.int64)
    for i, m in enumerate(machines):
        runs = _runs(rng_for(seed, plant_id, "campaigns", m), n_u, clo, chi)
        choice = rng_for(seed, plant_id, "products", m).integers(0, len(style.products), runs.size)
        product[i] = np.repeat(choice, runs)[:n_u]
        batch[i] = rng_for(seed, plant_id, "batch_size", m).integers(
            style.units_in_batch[0], style.units_in_batch[1] + 1, size=n_u
        )

    # Operators: 8 h shifts in local time, a crew per shift instance.
    rng = rng_for(seed, plant_id, "operators")
    pool_numbers = rng.choice(
        np.arange(style.badge_range[0], style.badge_range[1] + 1),
        size=style.operator_pool_size,
        replace=False,
    )
    pool = tuple(style.badge_format.format(int(x)) for x in pool_numbers)
    local_start = grid.local_ns[:: grid.steps_per_unit][:n_u]
    shift_ns = style.shift_hours * 3600 * NS_PER_S
    shift = (local_start - style.shift_start_hour * 3600 * NS_PER_S) // shift_ns
    shift_ids, shift_rank = np.unique(shift, return_inverse=True)
    crew_size = min(len(pool), max(1, math.ceil(n_m / 2)))
    crews = np.stack([rng.permutation(len(pool))[:crew_size] for _ in range(shift_ids.size)])
    seat = np.minimum(np.arange(n_m) // 2, crew_size - 1)  # one operator per two machines
    operator = crews[shift_rank][:, seat].T.copy()

    # Unit ids: <prefix>-<local date>-<machine>-<sequence within machine and day>.
    short = machine_short_names(machines)
    day_first = grid.unit_day_bounds[grid.unit_day]
    seq = np.arange(n_u) - day_first + 1
    day_txt = [d.strftime("%Y%m%d") for d in grid.dates]
    unit_ids = np.empty((n_m, n_u), dtype=object)
    prefix = style.unit_prefix
    for i in range(n_m):
        unit_ids[i] = [
            f"{prefix}-{day_txt[d]}-{short[i]}-{s:04d}"
            for d, s in zip(grid.unit_day.tolist(), seq.tolist(), strict=True)
        ]
    return Production(
        machines=machines,
        line_of_machine=line_of_machine,
        line_names=line_names,
        lot_of_unit=lot_of_unit,
        lot_ids=lot_ids,
        lot_supplier=lot_supplier,
        lot_moisture=lot_moisture,
        product=product,
        operator=operator,
        operator_pool=pool,
        unit_ids=unit_ids,
        units_in_batch=batch,
    )
