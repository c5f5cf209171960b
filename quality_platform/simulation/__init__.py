"""Deterministic multi-plant sensor/production simulator with ground-truth scenarios.

``simulate(out_dir, days, seed, scenario, start, plants, onset_day)`` writes the landing files of
every plant with ``source: simulated`` (by default the configs in ``data/plants/``) into
``out_dir/<plant_id>/...`` exactly as the plant configs describe them - machine ids, time zone,
file paths (``{date}`` = the plant's LOCAL date, ``*`` in the inspections glob = the label
arrival date), field names, unit labels, format and layout - and returns the ground truth, also
written to ``out_dir/truth.json`` (sorted keys, indent 2, UTF-8, no operator ids).

Data per plant and machine:

* readings every ``reading_interval_seconds`` on the UTC grid, for temperature, pressure,
  material moisture and vibration, generated in canonical units (``data/standard/quantities.yaml``)
  and converted with :func:`quality_platform.units.convert` into the plant's unit labels, rounded
  to 5 significant digits of a typical value;
* contiguous production units (cycle time per plant: plant_a 15 min, plant_b 20 min, plant_c
  30 min batches, see :mod:`.styles`) with line, product, material lot, supplier and operator;
* inspection outcomes (ok / rework / scrap) from the ground-truth defect mechanism
  (:mod:`.mechanism`), arriving ``label latency`` days later (plant_a 2, plant_b 3, plant_c 1):
  production day ``d``'s results are written into day ``d``'s folder, named with the arrival date,
  and only when the arrival date is within the simulated days.

Scenarios (:mod:`.scenarios`): ``stable``, ``moisture_drift``, ``sensor_offset``,
``stuck_sensor``, ``missing_burst``, ``concept_drift`` and ``bad_files`` (:mod:`.bad_files`).

Determinism: every random stream is a numpy Generator seeded by (seed, plant, machine, stream),
so the same arguments give byte-identical files, and a longer simulation starts with the same
values as a shorter one. Nothing depends on the wall clock. Existing files in ``out_dir`` are
overwritten, never deleted.
"""

from __future__ import annotations

from quality_platform.simulation.mechanism import (
    BASE_COEFFICIENTS,
    CONCEPT_DRIFT_COEFFICIENTS,
    Coefficients,
)
from quality_platform.simulation.scenarios import SCENARIOS
from quality_platform.simulation.simulator import DEFAULT_START, TRUTH_FILE, simulate
from quality_platform.simulation.styles import CYCLE_MINUTES, LABEL_LATENCY_DAYS

__all__ = [
    "BASE_COEFFICIENTS",
    "CONCEPT_DRIFT_COEFFICIENTS",
    "CYCLE_MINUTES",
    "DEFAULT_START",
    "LABEL_LATENCY_DAYS",
    "SCENARIOS",
    "TRUTH_FILE",
    "Coefficients",
    "simulate",
]
