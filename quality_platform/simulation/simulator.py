"""Orchestration: simulate every simulated plant, apply the scenario, write files and truth.json."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from quality_platform.config import PlantConfig, QuantityRegistry, load_plants, load_quantities
from quality_platform.simulation import mechanism as mech
from quality_platform.simulation.attributes import write_attribute_files
from quality_platform.simulation.bad_files import apply_bad_files
from quality_platform.simulation.grid import (
    NS_PER_S,
    TimeGrid,
    build_grid,
    local_midnight_ns,
    rng_for,
)
from quality_platform.simulation.scenarios import (
    INCIDENT_TYPES,
    SCENARIOS,
    ScenarioPlan,
    missing_window,
    moisture_drift,
    plan_scenario,
)
from quality_platform.simulation.schedule import build_production
from quality_platform.simulation.styles import style_for
from quality_platform.simulation.writers import (
    PlantFrame,
    array_columns,
    batch_files,
    cycle_sent,
    embeds_readings,
    readings_columns,
    stream_path,
    write_inspections,
    write_table,
    write_units,
)
from quality_platform.units import convert

DEFAULT_START = dt.date(2026, 3, 16)
SIGNIFICANT_DIGITS = 5
TRUTH_FILE = "truth.json"


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / NS_PER_S, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decimals_for(canonical_unit: str, plant_unit: str, nominal: float) -> int:
    """Decimals that keep ~5 significant digits of a typical value in the plant's unit."""
    typical = abs(float(convert(np.array([nominal]), canonical_unit, plant_unit)[0]))
    if typical == 0.0:
        return SIGNIFICANT_DIGITS
    return max(0, SIGNIFICANT_DIGITS - 1 - int(np.floor(np.log10(typical))))


def _runs(paths: list[Path]) -> list[tuple[Path, int, int]]:
    """Consecutive days sharing one file path: ``(path, first day, last day + 1)``."""
    out: list[tuple[Path, int, int]] = []
    for d, p in enumerate(paths):
        if out and out[-1][0] == p:
            out[-1] = (p, out[-1][1], d + 1)
        else:
            out.append((p, d, d + 1))
    return out


def _span(bounds: np.ndarray, d0: int, d1: int) -> slice:
    return slice(int(bounds[d0]), int(bounds[d1]))


def _reported_values(
    plant: PlantConfig,
    registry: QuantityRegistry,
    true: dict[str, np.ndarray],
    plan: ScenarioPlan,
    grid: TimeGrid,
) -> dict[str, np.ndarray]:
    """Values as the plant's sensors report them: scenario faults, plant unit, rounded."""
    pid = plant.plant_id
    machines = list(plant.machines)
    values: dict[str, np.ndarray] = {}
    for q, mapping in plant.streams.readings.quantities.items():
        if q not in true:
            raise ValueError(
                f"{pid}: quantity {q!r} cannot be simulated; simulated: "
                f"{', '.join(mech.QUANTITIES)}"
            )
        canonical_unit = registry.quantities[q].unit
        plant_unit = registry.pint_unit(mapping.unit)
        # the process is generated in mech.UNITS (= the canonical units; a no-op conversion
        # unless quantities.yaml changes its canonical unit)
        canon = convert(true[q], mech.UNITS[q], canonical_unit)
        fault = plan.hits(pid) and plan.quantity == q
        if fault and plan.name == "sensor_offset":
            canon = canon.copy()
            k = grid.step_index(plan.onset_ns(grid.tz))
            offset = convert(
                np.array([0.0, plan.params["offset"]]), plan.params["unit"], canonical_unit
            )
            canon[machines.index(plan.machines[0]), k:] += offset[1] - offset[0]
        v = np.round(
            convert(canon, canonical_unit, plant_unit),
            decimals_for(mech.UNITS[q], plant_unit, mech.NOMINAL[q]),
        )
        if fault and plan.name == "stuck_sensor":
            k = max(1, grid.step_index(plan.onset_ns(grid.tz)))
            i = machines.index(plan.machines[0])
            v[i, k:] = v[i, k - 1]
        values[q] = v
    return values


def _inspection_times(
    seed: int, plant_id: str, machines: tuple[str, ...], grid: TimeGrid, latency: int
) -> np.ndarray:
    """When each unit is inspected (UTC ns, ``(M, U)``).

    Between ``latency - 1`` days + 1 h and ``latency`` days - 1 h after the unit's end, never
    after the end of the local arrival day (production day + latency).
    """
    lo = max(3600, (latency - 1) * 86_400 + 3600)
    hi = max(lo + 1, latency * 86_400 - 3600)
    delay_s = np.stack(
        [
            np.floor(rng_for(seed, plant_id, "inspection_delay", m).uniform(lo, hi, grid.n_units))
            for m in machines
        ]
    ).astype(np.int64)
    arrival_end = np.array(
        [local_midnight_ns(d + dt.timedelta(days=latency + 1), grid.tz) for d in grid.dates],
        dtype=np.int64,
    )[grid.unit_day]
    return np.minimum(
        grid.unit_end_ns[None, :] + delay_s * NS_PER_S, arrival_end[None, :] - NS_PER_S
    )


def simulate_plant(
    plant: PlantConfig,
    registry: QuantityRegistry,
    plan: ScenarioPlan,
    seed: int,
    start: dt.date,
    days: int,
    out_dir: Path,
) -> dict[str, Any]:
    """Simulate and write one plant; returns its part of the truth (counts, files)."""
    pid = plant.plant_id
    style = style_for(plant)
    grid = build_grid(
        plant.timezone, start, days, plant.reading_interval_seconds, style.cycle_minutes
    )
    machines = tuple(plant.machines)
    n_m, n_u, spu = len(machines), grid.n_units, grid.steps_per_unit
    prod = build_production(pid, machines, grid, style, seed)

    # True process and defects.
    unit_of_step = np.minimum(np.arange(grid.n_steps) // spu, n_u - 1)
    lot_steps = prod.lot_moisture[prod.machine_lots()[:, unit_of_step]]
    true = mech.generate_process(seed, pid, machines, grid, lot_steps)
    if plan.name == "moisture_drift" and plan.hits(pid):
        true["material_moisture"] = true["material_moisture"] + moisture_drift(plan, grid)[None, :]
    features = mech.unit_features(true, spu, n_u)
    product_offset = np.array([p.logit_offset for p in style.products])[prod.product]
    drifted = None
    if plan.name == "concept_drift" and plan.hits(pid):
        drifted = (mech.CONCEPT_DRIFT_COEFFICIENTS, grid.unit_start_ns >= plan.onset_ns(grid.tz))
    outcome = mech.draw_outcomes(
        seed, pid, machines, features, product_offset, mech.BASE_COEFFICIENTS, drifted
    )
    latency = style.label_latency_days
    inspected_ns = _inspection_times(seed, pid, machines, grid, latency)

    # What the sensors report and what is sent.
    values = _reported_values(plant, registry, true, plan, grid)
    present = np.ones((n_m, grid.n_steps), dtype=bool)
    if plan.name == "missing_burst" and plan.hits(pid):
        t0, t1 = missing_window(plan, grid)
        cols = (grid.utc_ns >= t0) & (grid.utc_ns < t1)
        for m in plan.machines:
            present[machines.index(m), cols] = False

    frame = PlantFrame(
        plant=plant,
        grid=grid,
        style=style,
        production=prod,
        values=values,
        present=present,
        outcome=outcome,
        inspected_ns=inspected_ns,
    )
    files = _write_plant(frame, out_dir, latency)
    attribute_files = write_attribute_files(
        frame, out_dir, {**registry.quantities, **plant.quantities}, seed
    )
    if attribute_files:
        files = sorted([*files, *(p.relative_to(out_dir).as_posix() for p in attribute_files)])

    # Counts per local day (array layout: a record per sent cycle, a value per sample; one file
    # per batch: the readings of the units that start on the day).
    array = plant.streams.readings.layout == "array"
    by_unit = array or plant.streams.readings.batch is not None
    n_q = (
        plant.streams.readings.values_per_record
        if array
        else len(plant.streams.readings.quantities)
    )
    sent = cycle_sent(frame) if array else present
    per_day: dict[str, dict[str, Any]] = {}
    last = grid.dates[-1]
    totals = dict.fromkeys(
        (
            "reading_rows",
            "reading_values",
            "units",
            "inspected_units",
            "rework",
            "scrap",
            "true_rework",
            "true_scrap",
        ),
        0,
    )
    for d, day in enumerate(grid.dates):
        if array:
            span = grid.day_units(d)
        elif by_unit:  # the steps of the units starting on the day
            du = grid.day_units(d)
            span = slice(du.start * grid.steps_per_unit, du.stop * grid.steps_per_unit)
        else:
            span = grid.day_steps(d)
        rows = int(sent[:, span].sum())
        out = outcome[:, grid.day_units(d)]
        arrival = day + dt.timedelta(days=latency)
        inspected = arrival <= last
        rec = {
            "reading_rows": rows,
            "reading_values": rows * n_q,
            "units": int(out.size),
            "inspected_units": int(out.size) if inspected else 0,
            "rework": int((out == mech.REWORK).sum()) if inspected else 0,
            "scrap": int((out == mech.SCRAP).sum()) if inspected else 0,
            "true_rework": int((out == mech.REWORK).sum()),
            "true_scrap": int((out == mech.SCRAP).sum()),
            "label_arrival_date": arrival.isoformat(),
        }
        per_day[day.isoformat()] = rec
        for k in totals:
            totals[k] += rec[k]
    totals["true_defect_rate"] = round(
        (totals["true_rework"] + totals["true_scrap"]) / max(1, totals["units"]), 6
    )
    return {
        "counts": {**totals, "per_day": per_day},
        "plant": {
            "timezone": plant.timezone,
            "machines": list(machines),
            "lines": {
                name: [m for m, li in zip(machines, prod.line_of_machine, strict=True) if li == i]
                for i, name in enumerate(prod.line_names)
            },
            "reading_interval_seconds": grid.step_s,
            "cycle_minutes": style.cycle_minutes,
            "label_latency_days": latency,
            "range_utc": [_iso(int(grid.midnight_ns[0])), _iso(int(grid.midnight_ns[-1]))],
            "files": files,
            "product_offsets": {p.code: p.logit_offset for p in style.products},
            "supplier_moisture_mean": {s.name: s.moisture for s in style.suppliers},
        },
    }


def _write_plant(frame: PlantFrame, out_dir: Path, latency: int) -> list[str]:
    plant, grid = frame.plant, frame.grid
    pid, streams = plant.plant_id, plant.streams
    dates = [d.isoformat() for d in grid.dates]
    written: list[Path] = []
    if streams.readings.batch is not None:
        written += _write_batches(frame, out_dir)
    elif not embeds_readings(plant):
        rs = streams.readings
        for path, d0, d1 in _runs([stream_path(out_dir, pid, rs.path, d) for d in dates]):
            cols = (
                array_columns(frame, _span(grid.unit_day_bounds, d0, d1))
                if rs.layout == "array"
                else readings_columns(frame, _span(grid.day_bounds, d0, d1))
            )
            write_table(path, cols, rs, rs.timestamp, grid.tz)
            written.append(path)
    for path, d0, d1 in _runs([stream_path(out_dir, pid, streams.units.path, d) for d in dates]):
        write_units(path, frame, _span(grid.unit_day_bounds, d0, d1))
        written.append(path)
    last = grid.dates[-1]
    labelled = [d for d in grid.dates if d + dt.timedelta(days=latency) <= last]
    ins_paths = [
        stream_path(
            out_dir,
            pid,
            streams.inspections.path,
            d.isoformat(),
            (d + dt.timedelta(days=latency)).isoformat(),
        )
        for d in labelled
    ]
    for path, d0, d1 in _runs(ins_paths):
        write_inspections(path, frame, _span(grid.unit_day_bounds, d0, d1))
        written.append(path)
    return sorted(p.relative_to(out_dir).as_posix() for p in written)


def _write_batches(frame: PlantFrame, out_dir: Path) -> list[Path]:
    """One readings file per batch (unit and machine), named by its id where the path has ``*``,
    in the folder of the local day the unit starts (``{date}``) or in one folder for all days."""
    plant, grid = frame.plant, frame.grid
    rs = plant.streams.readings
    if "*" not in rs.path:
        raise ValueError(
            f"{plant.plant_id}: streams.readings.path {rs.path!r} needs a '*' where the simulator "
            "writes each batch file's id (e.g. '{date}/batches/*.csv')"
        )
    written = []
    for d, day in enumerate(grid.dates):
        units = _span(grid.unit_day_bounds, d, d + 1)
        for uid, cols in batch_files(frame, units):
            path = stream_path(out_dir, plant.plant_id, rs.path, day.isoformat(), uid)
            write_table(path, cols, rs, rs.timestamp, grid.tz)
            written.append(path)
    return written


def _mechanism_truth(plan: ScenarioPlan, plants: dict[str, PlantConfig]) -> dict[str, Any]:
    changes = []
    if plan.name == "concept_drift" and plan.plant is not None:
        assert plan.onset_date is not None
        changes.append(
            {
                "plant": plan.plant,
                "from_date": plan.onset_date.isoformat(),
                "coefficients": mech.CONCEPT_DRIFT_COEFFICIENTS.as_dict(),
            }
        )
    return {
        "formula": mech.FORMULA,
        "coefficients": mech.BASE_COEFFICIENTS.as_dict(),
        "constants": {
            "moisture_threshold_percent": mech.MOISTURE_THRESHOLD,
            "temperature_nominal_degC": mech.NOMINAL["temperature"],
            "temperature_scale_degC": mech.TEMPERATURE_SCALE,
            "vibration_threshold_mm_per_s": mech.VIBRATION_THRESHOLD,
            "pressure_nominal_kPa": mech.NOMINAL["pressure"],
            "pressure_scale_kPa": mech.PRESSURE_SCALE,
            "logit_noise_sd": mech.LOGIT_NOISE_SD,
            "scrap_shift": mech.SCRAP_SHIFT,
        },
        "features": {
            "z_moisture": f"max(0, mean(material_moisture) - {mech.MOISTURE_THRESHOLD:g})",
            "z_temperature": f"((mean(temperature) - {mech.NOMINAL['temperature']:g}) / "
            f"{mech.TEMPERATURE_SCALE:g})**2",
            "z_vibration": f"max(0, max(vibration) - {mech.VIBRATION_THRESHOLD:g})",
            "z_pressure": f"((mean(pressure) - {mech.NOMINAL['pressure']:g}) / "
            f"{mech.PRESSURE_SCALE:g})**2",
        },
        "canonical_units": dict(mech.UNITS),
        "window": "true (canonical-unit) readings with start <= t < end; sensor faults and "
        "missing readings do not change the outcome",
        "outcomes": {
            "ok": "not defective",
            "rework": "defective, mild",
            "scrap": "defective, severe (P = sigmoid(logit + scrap_shift) given defective)",
        },
        "product_offsets": {
            pid: {p.code: p.logit_offset for p in style_for(pl).products}
            for pid, pl in plants.items()
        },
        "changes": changes,
    }


def _incidents(plan: ScenarioPlan, plants: dict[str, PlantConfig]) -> tuple[dict, list[dict]]:
    if plan.plant is None:
        return {}, []
    assert plan.onset_date is not None
    plant = plants[plan.plant]
    onset_ns = plan.onset_ns(plant.timezone)
    affected: dict[str, Any] = {
        "plant": plan.plant,
        "machines": list(plan.machines),
        "quantity": plan.quantity,
        "onset_utc": _iso(onset_ns),
        "details": dict(plan.params),
    }
    if len(plan.machines) == 1:
        affected["machine"] = plan.machines[0]
    if plan.quantity is not None:
        affected["sensor"] = plant.streams.readings.quantities[plan.quantity].field
    base = {
        "type": INCIDENT_TYPES[plan.name],
        "plant": plan.plant,
        "from_date": plan.onset_date.isoformat(),
        "from_utc": _iso(onset_ns),
    }
    incidents: list[dict[str, Any]] = []
    if plan.name == "moisture_drift":
        incidents.append({**base, "quantity": plan.quantity})
    elif plan.name in ("sensor_offset", "stuck_sensor"):
        incidents.append({**base, "machine": plan.machines[0], "quantity": plan.quantity})
    elif plan.name == "missing_burst":
        grid_tz = plant.timezone
        t0 = onset_ns + plan.params["start_hour"] * 3600 * NS_PER_S
        t1 = t0 + plan.params["hours"] * 3600 * NS_PER_S
        affected["from_utc"], affected["to_utc"] = _iso(t0), _iso(t1)
        affected["timezone"] = grid_tz
        for m in plan.machines:
            incidents.append({**base, "machine": m, "from_utc": _iso(t0), "to_utc": _iso(t1)})
    else:
        incidents.append(base)
    return affected, incidents


def simulate(
    out_dir: Path,
    days: int = 30,
    seed: int = 7,
    scenario: str = "stable",
    start: dt.date = DEFAULT_START,
    plants: dict[str, PlantConfig] | None = None,
    onset_day: int | None = None,
) -> dict[str, Any]:
    """Simulate the ``source: simulated`` plants into ``out_dir`` (see the package docstring).

    Returns the ground truth, also written to ``out_dir/truth.json``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; valid scenarios: {', '.join(SCENARIOS)}")
    if int(days) != days or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    days, seed = int(days), int(seed)
    start = dt.date(start.year, start.month, start.day)  # a datetime would leak its time of day
    all_plants = load_plants() if plants is None else plants
    sim = {pid: p for pid, p in sorted(all_plants.items()) if p.source == "simulated"}
    registry = load_quantities()
    plan = plan_scenario(scenario, sim, start, days, onset_day, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    per_plant = {
        pid: simulate_plant(p, registry, plan, seed, start, days, out_dir) for pid, p in sim.items()
    }
    affected, incidents = _incidents(plan, sim)
    bad: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    if scenario == "bad_files":
        bad, skipped = apply_bad_files(out_dir, sim, registry, start, days, seed)
        affected = {"plants": sorted({b["plant"] for b in bad})}
        incidents = [
            {
                "type": "bad_file",
                "plant": b["plant"],
                "from_date": b["date"],
                "file": b["file"],
                "expected_rule": b["expected_rule"],
            }
            for b in bad
        ]
        for b in bad:
            files = per_plant[b["plant"]]["plant"]["files"]
            if b["file"] not in files:
                files.append(b["file"])
                files.sort()

    truth: dict[str, Any] = {
        "generator": "quality_platform.simulation",
        "scenario": scenario,
        "seed": seed,
        "start": start.isoformat(),
        "end": (start + dt.timedelta(days=days - 1)).isoformat(),
        "days": days,
        "onset_day": plan.onset_day,
        "onset_date": plan.onset_date.isoformat() if plan.onset_date else None,
        "affected": affected,
        "expected_incidents": incidents,
        "label_latency_days": {p: v["plant"]["label_latency_days"] for p, v in per_plant.items()},
        "cycle_minutes": {pid: v["plant"]["cycle_minutes"] for pid, v in per_plant.items()},
        "mechanism": _mechanism_truth(plan, sim),
        "counts": {pid: v["counts"] for pid, v in per_plant.items()},
        "plants": {pid: v["plant"] for pid, v in per_plant.items()},
        "bad_files": bad,
        "bad_files_skipped": skipped,
        "notes": "counts describe the generated data before any bad-file corruption; "
        "reading_rows = machine x timestamp records (array layout: machine x cycle records), "
        "reading_values = numeric values; "
        "rework/scrap count inspected units, true_* all units (labels pending included)",
    }
    text = json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    (out_dir / TRUTH_FILE).write_bytes(text.encode("utf-8"))
    return json.loads(text)
