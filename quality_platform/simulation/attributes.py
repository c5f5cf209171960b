"""Unit attributes for a plant whose config declares ``streams.attributes``: one record per
produced unit with a value per declared quantity (raw-material property, set-point, certificate
value), drawn in the quantity's canonical unit inside its plausibility range and written in the
plant's unit label, rounded to ~5 significant digits, so the standardisation gives them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quality_platform.config import QuantitySpec
from quality_platform.simulation.grid import rng_for
from quality_platform.simulation.writers import (
    Column,
    PlantFrame,
    stream_path,
    unit_columns,
    write_table,
)
from quality_platform.units import convert

#: the share of a quantity's plausibility range at each end that simulated values keep clear of
MARGIN = 0.2


def attribute_values(
    frame: PlantFrame, units: slice, quantities: dict[str, QuantitySpec], seed: int
) -> dict[str, np.ndarray]:
    """Each declared attribute quantity of ``units`` (rows as :func:`unit_columns`) in the
    plant's unit label: deterministic per (seed, plant, quantity, machine, unit index), so a
    longer simulation starts with the same values as a shorter one."""
    spec = frame.plant.streams.attributes
    assert spec is not None
    _, m_idx, u_idx = unit_columns(frame, units)
    out = {}
    for q, v in spec.values.items():
        canon = quantities[q]
        u = np.stack(  # a stream per machine: a longer simulation extends it, never reshuffles
            [
                rng_for(seed, frame.plant.plant_id, "attributes", q, m).random(frame.grid.n_units)
                for m in frame.machines
            ]
        )
        lo = canon.min + MARGIN * (canon.max - canon.min)
        hi = canon.max - MARGIN * (canon.max - canon.min)
        values = convert(lo + (hi - lo) * u[m_idx, u_idx], canon.unit, v.unit)
        typical = float(np.abs(convert(np.array([(lo + hi) / 2]), canon.unit, v.unit))[0])
        digits = 4 - int(np.floor(np.log10(typical))) if typical > 0 else 5
        out[q] = np.round(values, max(0, digits))
    return out


def write_attributes(
    path: Path,
    frame: PlantFrame,
    units: slice,
    quantities: dict[str, QuantitySpec],
    seed: int,
) -> int:
    """The attribute records of ``units`` in the configured fields; returns rows."""
    spec = frame.plant.streams.attributes
    assert spec is not None
    canonical, _, _ = unit_columns(frame, units)
    cols: dict[str, Column] = {spec.fields["unit_id"]: canonical["unit_id"]}
    for q, values in attribute_values(frame, units, quantities, seed).items():
        cols[spec.values[q].field] = values
    return write_table(path, cols, spec, frame.plant.streams.units.timestamp, frame.grid.tz)


def write_attribute_files(
    frame: PlantFrame, out_dir: Path, quantities: dict[str, QuantitySpec], seed: int
) -> list[Path]:
    """The plant's attributes files (a file per local day, or one for all days, as its path
    says); none for a plant without the stream."""
    spec = frame.plant.streams.attributes
    if spec is None:
        return []
    grid, pid = frame.grid, frame.plant.plant_id
    b = grid.unit_day_bounds
    if not spec.per_day_files:
        path = stream_path(out_dir, pid, spec.path, None)
        write_attributes(path, frame, slice(int(b[0]), int(b[-1])), quantities, seed)
        return [path]
    written = []
    for d, day in enumerate(grid.dates):
        path = stream_path(out_dir, pid, spec.path, day.isoformat())
        write_attributes(path, frame, slice(int(b[d]), int(b[d + 1])), quantities, seed)
        written.append(path)
    return written
