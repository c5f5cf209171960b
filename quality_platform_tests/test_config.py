"""Plant, quantity and KPI configuration: valid files load, bad files name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from quality_platform.config import ConfigError, load_kpis, load_plants, parse_formula
from quality_platform.settings import Paths


def test_committed_plants_load(qp_env: Paths) -> None:
    plants = load_plants(qp_env)
    assert sorted(plants) == ["ai4i2020", "plant_a", "plant_b", "plant_c"]
    fmts = {p.streams.readings.format for p in plants.values()}
    assert fmts == {"csv", "parquet", "jsonl"}
    assert plants["plant_a"].timezone == "Europe/Berlin"
    assert plants["ai4i2020"].source == "real"


def _edit(path: Path, fn) -> None:
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone"),
        (
            lambda d: d["streams"]["readings"]["timestamp"].update(kind="weekday"),
            "streams.readings.timestamp.kind",
        ),
        (
            lambda d: d["streams"]["readings"]["quantities"].update(
                humidity={"field": "x", "unit": "%"}
            ),
            "streams.readings.quantities.humidity",
        ),
        (
            lambda d: d["streams"]["readings"]["quantities"]["pressure"].update(unit="degC"),
            "streams.readings.quantities.pressure.unit",
        ),
        (lambda d: d["legacy_kpis"][0].update(maps_to="happiness"), "legacy_kpis.0.maps_to"),
        (lambda d: d["legacy_kpis"][0].update(formula="__import__('os')"), "legacy_kpis.0.formula"),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d["streams"]["readings"]["csv"].update(header=False), "streams.readings.csv"),
        (
            lambda d: d["streams"]["units"]["csv"].update(columns=["Auftrag"]),
            "streams.units.csv",
        ),
        (
            lambda d: d["streams"]["readings"]["quantities"]["pressure"].update(field="Temperatur"),
            "both map field 'Temperatur'",
        ),
        (
            lambda d: d["streams"]["readings"]["quantities"]["pressure"].update(field="Maschine"),
            "field 'Maschine' is the machine and quantity 'pressure'",
        ),
        (
            lambda d: d["streams"]["inspections"]["outcome"].update(
                rules=[{"field": "x", "below": 1, "then": "scrap"}]
            ),
            "streams.inspections.outcome",  # flags and rules at once
        ),
        (
            lambda d: d["streams"]["inspections"].update(
                outcome={"rules": [{"field": "x", "below": 1, "above": 2, "then": "scrap"}]}
            ),
            "streams.inspections.outcome.rules.0",
        ),
        (
            lambda d: d["streams"]["inspections"].update(
                outcome={"rules": [{"expression": "__import__('os') > 1", "then": "scrap"}]}
            ),
            "uses Call",  # an expression is parsed against an allow-list, never run
        ),
        (
            lambda d: d["streams"]["inspections"].update(
                outcome={"rules": [{"expression": "a.b > 1", "then": "scrap"}]}
            ),
            "uses Attribute",
        ),
        (
            lambda d: d["streams"]["inspections"].update(
                outcome={
                    "rules": [{"expression": "d < 80", "fields": {"h": "Haerte"}, "then": "scrap"}]
                }
            ),
            "alias(es) ['h'] in 'fields' are not used",
        ),
        (
            lambda d: d["streams"]["inspections"].update(
                outcome={"rules": [{"field": "x", "expression": "x > 1", "then": "scrap"}]}
            ),
            "not both",
        ),
        (
            lambda d: d["streams"]["units"]["fields"].pop("end"),
            "fields ['end'] must be mapped",
        ),
        (  # an inspection in a many-day file lands on its unit's day: the units file must say
            lambda d: d["streams"]["inspections"].update(path="pruefung_*.csv"),
            "units.path '{date}/auftraege.csv' must then be one file for many days",
        ),
    ],
)
def test_bad_plant_config_names_file_and_field(qp_env: Paths, mutate, field: str) -> None:
    f = qp_env.plants_dir / "plant_a.yaml"
    _edit(f, mutate)
    with pytest.raises(ConfigError) as exc:
        load_plants(qp_env)
    msg = str(exc.value)
    assert str(f) in msg
    assert field in msg


def test_plant_id_must_match_file_name(qp_env: Paths) -> None:
    f = qp_env.plants_dir / "plant_b.yaml"
    _edit(f, lambda d: d.update(plant_id="plant_x"))
    with pytest.raises(ConfigError, match=r"plant_b\.yaml.*plant_id"):
        load_plants(qp_env)


def test_kpi_registry_has_the_required_kpis(qp_env: Paths) -> None:
    reg = load_kpis(qp_env)
    ids = {k.id for k in reg.kpis}
    assert {"defect_rate", "first_pass_yield", "scrap_rate"} <= ids
    for k in reg.kpis:
        assert k.owner and k.description and k.version >= 1 and k.unit


@given(st.text(min_size=1, max_size=30))
def test_formula_parser_accepts_only_arithmetic_over_counts(text: str) -> None:
    try:
        tree = parse_formula(text)
    except ValueError:
        return
    import ast

    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert names <= {"produced", "inspected", "rework", "scrap", "defective", "good"}
    assert not any(isinstance(n, ast.Call | ast.Attribute | ast.Subscript) for n in ast.walk(tree))


def test_a_key_given_twice_is_an_error_not_a_silent_overwrite(qp_env: Paths) -> None:
    """YAML keeps the last of two equal keys; two columns mapped to one quantity would lose one."""
    f = qp_env.plants_dir / "plant_a.yaml"
    text = f.read_text()
    twice = '      temperature: {field: Temperatur, unit: "°C"}\n'
    assert twice in text
    f.write_text(text.replace(twice, twice + twice.replace("Temperatur,", "Temperatur2,")))
    line = text[: text.index(twice)].count("\n") + 1
    with pytest.raises(ConfigError) as exc:
        load_plants(qp_env)
    msg = str(exc.value)
    assert str(f) in msg and "key 'temperature' is given twice" in msg
    assert f"lines {line} and {line + 1}" in msg
