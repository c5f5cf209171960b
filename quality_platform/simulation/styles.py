"""Per-plant production conventions of the simulator (cycle times, label latency, id styles).

Everything a plant's *files* look like comes from its YAML config. What the config does not say -
how long a production unit takes, how many days inspection results lag behind production and what
ids, lots, products and suppliers look like - lives here, keyed by plant id, with a default derived
from the readings format for plants onboarded later (so a new simulated plant needs no code):

=======  ===========  ============  ===========================================
plant    cycle (min)  latency (d)   ids: unit / operator badge / material lot
=======  ===========  ============  ===========================================
plant_a  15 (unit)    2             ``A-20260316-M03-0042`` / ``W-10234`` / ``CH-00017``
plant_b  20 (unit)    3             ``B-20260316-M03-0042`` / ``BDG-4711`` / ``LOT-00017``
plant_c  30 (batch)   1             ``C-20260316-M03-0042`` / ``OP7731`` / ``CL-00017``
other    csv 15,      2             ``<X>-20260316-M03-0042`` / ``OP1234`` / ``<X>L-00017``
         parquet 20,
         jsonl 30
=======  ===========  ============  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass

from quality_platform.config import PlantConfig

#: Cycle time (minutes) of one production unit / batch, per plant id.
CYCLE_MINUTES: dict[str, int] = {"plant_a": 15, "plant_b": 20, "plant_c": 30}
#: Default cycle time for plants not listed above, by the format of their readings stream.
CYCLE_MINUTES_BY_FORMAT: dict[str, int] = {"csv": 15, "parquet": 20, "jsonl": 30}
#: Days between the production day and the arrival of its inspection results, per plant id.
LABEL_LATENCY_DAYS: dict[str, int] = {"plant_a": 2, "plant_b": 3, "plant_c": 1}
DEFAULT_LABEL_LATENCY_DAYS = 2


@dataclass(frozen=True)
class Supplier:
    """A material supplier; ``moisture`` is the mean moisture of its lots (percent)."""

    name: str
    moisture: float


@dataclass(frozen=True)
class Product:
    """A product code, its family and its additive effect on the defect logit."""

    code: str
    family: str
    logit_offset: float


@dataclass(frozen=True)
class PlantStyle:
    """How one plant names things and how fast it produces."""

    unit_prefix: str
    badge_format: str
    badge_range: tuple[int, int]
    lot_format: str
    products: tuple[Product, ...]
    suppliers: tuple[Supplier, ...]
    cycle_minutes: int
    label_latency_days: int
    operator_pool_size: int = 20
    shift_start_hour: int = 6
    shift_hours: int = 8
    #: Material lots last between these many hours (changes happen at unit boundaries).
    lot_hours: tuple[float, float] = (3.0, 6.0)
    #: A product campaign on a machine lasts between these many hours.
    campaign_hours: tuple[float, float] = (8.0, 16.0)
    #: Pieces in one batch (only written where the format has a field for it).
    units_in_batch: tuple[int, int] = (40, 60)


_STYLES: dict[str, dict[str, object]] = {
    "plant_a": {
        "unit_prefix": "A",
        "badge_format": "W-{:05d}",
        "badge_range": (10000, 99999),
        "lot_format": "CH-{:05d}",
        "products": (
            Product("GH-100", "Gehaeuse", 0.0),
            Product("GH-200", "Gehaeuse", 0.3),
            Product("DK-110", "Deckel", -0.2),
            Product("KL-300", "Clip", 0.15),
        ),
        "suppliers": (
            Supplier("Granulat Nord GmbH", 11.6),
            Supplier("Polymerwerk Sued AG", 12.0),
            Supplier("Rhein Kunststoffe KG", 12.5),
        ),
    },
    "plant_b": {
        "unit_prefix": "B",
        "badge_format": "BDG-{:04d}",
        "badge_range": (1000, 9999),
        "lot_format": "LOT-{:05d}",
        "products": (
            Product("SKU-7001", "profile", 0.0),
            Product("SKU-7002", "profile", 0.3),
            Product("SKU-8100", "tube", -0.2),
        ),
        "suppliers": (
            Supplier("Acme Polymers", 11.7),
            Supplier("Delta Resins", 12.4),
        ),
    },
    "plant_c": {
        "unit_prefix": "C",
        "badge_format": "OP{:04d}",
        "badge_range": (1000, 9999),
        "lot_format": "CL-{:05d}",
        "products": (
            Product("CMP-A1", "compound-A", 0.0),
            Product("CMP-A2", "compound-A", 0.3),
            Product("CMP-B1", "compound-B", -0.2),
            Product("CMP-B2", "compound-B", 0.15),
        ),
        "suppliers": (
            Supplier("Midwest Polymer Supply", 11.8),
            Supplier("Lakeside Chemicals", 12.3),
            Supplier("Prairie Resin Co", 12.0),
        ),
    },
}


def _generic_prefix(plant_id: str) -> str:
    tail = plant_id.removeprefix("plant_") or plant_id
    return tail[0].upper()


def style_for(plant: PlantConfig) -> PlantStyle:
    """The production conventions of ``plant`` (its own entry or a format-based default)."""
    pid = plant.plant_id
    cycle = CYCLE_MINUTES.get(pid, CYCLE_MINUTES_BY_FORMAT[plant.streams.readings.format])
    latency = LABEL_LATENCY_DAYS.get(pid, DEFAULT_LABEL_LATENCY_DAYS)
    if pid in _STYLES:
        return PlantStyle(cycle_minutes=cycle, label_latency_days=latency, **_STYLES[pid])  # type: ignore[arg-type]
    prefix = _generic_prefix(pid)
    return PlantStyle(
        unit_prefix=prefix,
        badge_format="OP{:04d}",
        badge_range=(1000, 9999),
        lot_format=prefix + "L-{:05d}",
        products=(
            Product(f"{prefix}-P1", "family-1", 0.0),
            Product(f"{prefix}-P2", "family-1", 0.3),
            Product(f"{prefix}-P3", "family-2", -0.2),
        ),
        suppliers=(Supplier("Supplier 1", 11.7), Supplier("Supplier 2", 12.3)),
        cycle_minutes=cycle,
        label_latency_days=latency,
    )
