"""The simulated physics: true process signals and the ground-truth defect mechanism.

Process (canonical units, per machine ``m`` and reading time ``t``; ``slow(sd, h)`` is a smooth
random curve - normal knots every ``h`` hours, linearly interpolated):

* temperature [degC] = 200 + N(0, 2.0)_m + 1.0 * sin(2 pi (local hour - 9) / 24)
  + slow(1.2, 2 h) + N(0, 0.4)
* pressure [kPa] = 800 + N(0, 10)_m + slow(8, 3 h) + N(0, 2.5)
* material_moisture [percent] = moisture of the material lot running on the machine's line
  (supplier mean + N(0, 0.6), see :mod:`.schedule`) + N(0, 0.08)_m + slow(0.12, 4 h)
  + N(0, 0.04)
* vibration [mm/s] = 3.0 * exp(N(0, 0.12)_m + slow(0.08, 6 h) + N(0, 0.06)), plus rare spikes
  (probability 0.002 per reading, + U(1, 4) mm/s); always positive.

Defect mechanism, per production unit, from the TRUE readings inside its window
``[start, end)`` (scenario sensor faults change what is reported, not this):

    z_moisture    = max(0, mean(material_moisture) - 12.5)         [percent]
    z_temperature = ((mean(temperature) - 200) / 4.0) ** 2
    z_vibration   = max(0, max(vibration) - 4.5)                    [mm/s]
    z_pressure    = ((mean(pressure) - 800) / 20.0) ** 2
    logit = b0 + w_m z_moisture + w_t z_temperature + w_v z_vibration + w_p z_pressure
            + product offset + N(0, 0.3)
    defective ~ Bernoulli(sigmoid(logit))
    scrap     = defective and U < sigmoid(logit)   (severe), otherwise rework (mild)

with ``b0 = -4.6, w_m = 3.5, w_t = 0.8, w_v = 1.5, w_p = 0`` and product offsets from
:mod:`.styles` (about 4-5 % defective in the stable scenario, a quarter of them scrap; the true
logit ranks units with ROC-AUC ~0.83, window-mean moisture alone ~0.7-0.75). The
``concept_drift`` scenario switches to ``b0 = -5.0, w_m = 0.5, w_p = 2.0`` from its onset: the
inputs stay the same, pressure deviation becomes the driver and moisture hardly matters any more.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from quality_platform.simulation.grid import NS_PER_S, TimeGrid, rng_for

QUANTITIES = ("temperature", "pressure", "material_moisture", "vibration")
#: Units the process and the mechanism are expressed in (the canonical units of quantities.yaml).
UNITS = {
    "temperature": "degC",
    "pressure": "kPa",
    "material_moisture": "percent",
    "vibration": "mm/s",
}
#: Nominal value of each simulated quantity in its canonical unit.
NOMINAL = {"temperature": 200.0, "pressure": 800.0, "material_moisture": 12.0, "vibration": 3.0}

MOISTURE_THRESHOLD = 12.5
TEMPERATURE_SCALE = 4.0
VIBRATION_THRESHOLD = 4.5
PRESSURE_SCALE = 20.0
LOGIT_NOISE_SD = 0.3
SCRAP_SHIFT = 0.0

OK, REWORK, SCRAP = 0, 1, 2
OUTCOME_NAMES = ("ok", "rework", "scrap")

FORMULA = (
    "logit = intercept + moisture * max(0, mean(material_moisture) - 12.5) "
    "+ temperature * ((mean(temperature) - 200) / 4.0)**2 "
    "+ vibration * max(0, max(vibration) - 4.5) "
    "+ pressure * ((mean(pressure) - 800) / 20.0)**2 + product_offset + N(0, 0.3); "
    "defective ~ Bernoulli(sigmoid(logit)); scrap if defective and U < sigmoid(logit), "
    "else rework. Means/max over the TRUE readings (canonical units) in the unit window "
    "[start, end)."
)


@dataclass(frozen=True)
class Coefficients:
    """Weights of the defect logit (features as in the module docstring)."""

    intercept: float = -4.6
    moisture: float = 3.5
    temperature: float = 0.8
    vibration: float = 1.5
    pressure: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The coefficients as a plain dict."""
        return dataclasses.asdict(self)


BASE_COEFFICIENTS = Coefficients()
CONCEPT_DRIFT_COEFFICIENTS = dataclasses.replace(
    BASE_COEFFICIENTS, intercept=-5.0, moisture=0.5, pressure=2.0
)


def _slow(rng: np.random.Generator, t_s: np.ndarray, sd: float, knot_hours: float) -> np.ndarray:
    """A smooth random curve: N(0, sd) knots every ``knot_hours``, linearly interpolated."""
    knot_s = knot_hours * 3600.0
    n_knots = int(np.ceil(t_s[-1] / knot_s)) + 2 if t_s.size else 2
    knots = rng.normal(0.0, sd, size=n_knots)
    return np.interp(t_s, np.arange(n_knots) * knot_s, knots)


def generate_process(
    seed: int,
    plant_id: str,
    machines: tuple[str, ...],
    grid: TimeGrid,
    lot_moisture_steps: np.ndarray,
) -> dict[str, np.ndarray]:
    """True process values ``quantity -> (machines, steps)`` in canonical units.

    ``lot_moisture_steps`` is the moisture of the lot running at each reading, ``(M, N)``.
    """
    n_m, n = len(machines), grid.n_steps
    t_s = (grid.utc_ns - grid.utc_ns[0]).astype(np.float64) / NS_PER_S
    local_hour = (grid.local_ns % (86_400 * NS_PER_S)).astype(np.float64) / (3600.0 * NS_PER_S)
    daily = np.sin(2.0 * np.pi * (local_hour - 9.0) / 24.0)
    out = {q: np.empty((n_m, n), dtype=np.float64) for q in QUANTITIES}
    for i, m in enumerate(machines):

        def r(component: str, m: str = m) -> np.random.Generator:
            return rng_for(seed, plant_id, "process", m, component)

        off = r("offsets").normal(0.0, 1.0, size=4)
        out["temperature"][i] = (
            NOMINAL["temperature"]
            + 2.0 * off[0]
            + 1.0 * daily
            + _slow(r("temperature_slow"), t_s, 1.2, 2.0)
            + r("temperature_noise").normal(0.0, 0.4, size=n)
        )
        out["pressure"][i] = (
            NOMINAL["pressure"]
            + 10.0 * off[1]
            + _slow(r("pressure_slow"), t_s, 8.0, 3.0)
            + r("pressure_noise").normal(0.0, 2.5, size=n)
        )
        out["material_moisture"][i] = (
            lot_moisture_steps[i]
            + 0.08 * off[2]
            + _slow(r("moisture_slow"), t_s, 0.12, 4.0)
            + r("moisture_noise").normal(0.0, 0.04, size=n)
        )
        vib = NOMINAL["vibration"] * np.exp(
            0.12 * off[3]
            + _slow(r("vibration_slow"), t_s, 0.08, 6.0)
            + r("vibration_noise").normal(0.0, 0.06, size=n)
        )
        spikes = r("spike_at").random(n) < 0.002
        vib += spikes * r("spike_size").uniform(1.0, 4.0, size=n)
        out["vibration"][i] = vib
    return out


def unit_features(
    true: dict[str, np.ndarray], steps_per_unit: int, n_units: int
) -> dict[str, np.ndarray]:
    """Window aggregates per machine and unit, ``(M, U)``, from the true readings."""

    def win(q: str) -> np.ndarray:
        a = true[q][:, : n_units * steps_per_unit]
        return a.reshape(a.shape[0], n_units, steps_per_unit)

    return {
        "temperature_mean": win("temperature").mean(axis=2),
        "pressure_mean": win("pressure").mean(axis=2),
        "material_moisture_mean": win("material_moisture").mean(axis=2),
        "vibration_max": win("vibration").max(axis=2),
        "vibration_mean": win("vibration").mean(axis=2),
    }


def logit(
    features: dict[str, np.ndarray], coef: Coefficients, product_offset: np.ndarray
) -> np.ndarray:
    """The deterministic part of the defect logit (no noise)."""
    z_m = np.maximum(0.0, features["material_moisture_mean"] - MOISTURE_THRESHOLD)
    z_t = ((features["temperature_mean"] - NOMINAL["temperature"]) / TEMPERATURE_SCALE) ** 2
    z_v = np.maximum(0.0, features["vibration_max"] - VIBRATION_THRESHOLD)
    z_p = ((features["pressure_mean"] - NOMINAL["pressure"]) / PRESSURE_SCALE) ** 2
    return (
        coef.intercept
        + coef.moisture * z_m
        + coef.temperature * z_t
        + coef.vibration * z_v
        + coef.pressure * z_p
        + product_offset
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_outcomes(
    seed: int,
    plant_id: str,
    machines: tuple[str, ...],
    features: dict[str, np.ndarray],
    product_offset: np.ndarray,
    coefficients: Coefficients = BASE_COEFFICIENTS,
    drifted: tuple[Coefficients, np.ndarray] | None = None,
) -> np.ndarray:
    """Outcome per machine and unit (0 ok, 1 rework, 2 scrap), ``(M, U)``.

    ``drifted = (coefficients, unit mask)`` applies other coefficients to the masked units (the
    random draws are the same either way, so only the relation changes).
    """
    lg = logit(features, coefficients, product_offset)
    if drifted is not None:
        coef2, mask = drifted
        lg = np.where(mask[None, :], logit(features, coef2, product_offset), lg)
    n_m, n_u = lg.shape
    noise = np.empty((n_m, n_u))
    u1 = np.empty((n_m, n_u))
    u2 = np.empty((n_m, n_u))
    for i, m in enumerate(machines):
        noise[i] = rng_for(seed, plant_id, "outcome", m, "noise").normal(0.0, LOGIT_NOISE_SD, n_u)
        u1[i] = rng_for(seed, plant_id, "outcome", m, "defect").random(n_u)
        u2[i] = rng_for(seed, plant_id, "outcome", m, "severity").random(n_u)
    lg = lg + noise
    defective = u1 < _sigmoid(lg)
    scrap = defective & (u2 < _sigmoid(lg + SCRAP_SHIFT))
    out = np.full((n_m, n_u), OK, dtype=np.int8)
    out[defective] = REWORK
    out[scrap] = SCRAP
    return out
