"""Configuration as data: plants, canonical quantities, KPIs and platform settings.

Every file is validated by a pydantic model; a bad file raises :class:`ConfigError` naming the
file and the dotted path of the offending field. Onboarding a plant means adding one YAML file to
``data/plants/`` - no code change.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
import zoneinfo
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from quality_platform.expressions import CONDITION, CONDITION_OPS, evaluate_condition
from quality_platform.expressions import parse as parse_expression
from quality_platform.settings import Paths, get_paths

PLANT_ID_RE = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
#: Separates a quantity from its channel in a signal name (``temperature@TS1``).
CHANNEL_SEP = "@"
COUNT_NAMES = ("produced", "inspected", "rework", "scrap", "defective", "good")


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the file and the field."""


class ConfigModel(BaseModel):
    """Base of every model of a committed config file (plants, KPIs, platform, features, ML, policy,
    incidents, alerts): unknown fields are errors (a misspelt key never passes silently) and
    loaded configs are immutable. Build new config sections on it; load files with
    :func:`load_yaml_model`, whose errors name the file and the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- quantities


QUANTITY_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Limits(ConfigModel):
    """Process limits of one quantity in its canonical unit (both optional; none = no limits)."""

    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper})")
        return self

    @property
    def defined(self) -> bool:
        return self.lower is not None or self.upper is not None


class QuantitySpec(ConfigModel):
    """A quantity: canonical unit, plausibility range [min, max] in that unit, meaning.

    With ``expression`` the quantity is *derived*: computed per machine and reading time from
    other quantities' readings at that time (e.g. ``torque * rotational_speed`` for mechanical
    power), by pint in the quantities' canonical units and converted into ``unit``. Derived
    quantities are features (``unit_features``), never values of the measured standard."""

    unit: str
    min: float
    max: float
    description: str
    expression: str | None = None
    #: The process window of a plant-local quantity (``time_outside_s``), declared with it in the
    #: plant file; the shared quantities' windows are in data/features.yaml.
    process_limits: Limits | None = None

    @field_validator("expression")
    @classmethod
    def _expression(cls, v: str | None) -> str | None:
        if v is not None:
            operands(v)
        return v

    @model_validator(mode="after")
    def _range(self) -> QuantitySpec:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


def operands(expression: str) -> list[str]:
    """The quantity names a derived quantity's ``expression`` uses (see
    :func:`quality_platform.units.operands`)."""
    from quality_platform.units import operands as _operands

    return _operands(expression)


class QuantityRegistry(ConfigModel):
    version: int
    quantities: dict[str, QuantitySpec]
    unit_aliases: dict[str, str] = Field(default_factory=dict)
    #: channel signals of the installed plants (``temperature@TS1`` -> ``temperature``), set by
    #: :func:`merged_registry` from the plant files, never read from quantities.yaml
    _channels: dict[str, str] = PrivateAttr(default_factory=dict)
    #: quantities some installed plant delivers as unit attributes (``streams.attributes``), set
    #: by :func:`merged_registry`; each is one feature column ``<quantity>__value``
    _attributes: set[str] = PrivateAttr(default_factory=set)

    def signals(self) -> dict[str, QuantitySpec]:
        """What the features describe, each with its quantity's spec: every quantity (shared,
        plant-local, derived; registry order), then every plant channel (sorted)."""
        out = dict(self.quantities)
        for sig, q in sorted(self._channels.items()):
            spec = self.quantities[q]
            channel = sig.split(CHANNEL_SEP, 1)[1]
            out[sig] = spec.model_copy(
                update={"description": f"Channel {channel} of {q}: {spec.description}"}
            )
        return out

    def attributes(self) -> dict[str, QuantitySpec]:
        """The quantities the installed plants deliver as unit attributes (sorted), each with its
        spec: one value per unit, not a time series."""
        return {q: self.quantities[q] for q in sorted(self._attributes)}

    def measured(self, signal: str) -> bool:
        """Whether a signal is read from files (not derived by an expression); a channel always
        is, a quantity unless it has an expression."""
        spec = self.quantities.get(signal)
        return spec is None or spec.expression is None

    def pint_unit(self, label: str) -> str:
        """The pint expression for a unit label as written in plant files."""
        return self.unit_aliases.get(label, label)


# --------------------------------------------------------------------------- plants


class CsvOptions(ConfigModel):
    """How a CSV file is written. ``header: false``: the file has no header row (SCADA and test-rig
    exports often have none); ``columns`` then names its fields in file order, and row numbers in
    quarantine stay the file's own (its first line is row 1)."""

    delimiter: str = ","
    encoding: str = "utf-8"
    header: bool = True
    columns: list[str] | None = None

    @model_validator(mode="after")
    def _columns(self) -> CsvOptions:
        if not self.header and not self.columns:
            raise ValueError("'header: false' needs 'columns' (the field names in file order)")
        if self.header and self.columns is not None:
            raise ValueError(
                "'columns' names the fields of a file without header row; set 'header: false' "
                "(a file with a header is read by its header)"
            )
        dup = sorted({c for c in self.columns or [] if (self.columns or []).count(c) > 1})
        if dup:
            raise ValueError(f"'columns' names {dup} more than once")
        return self


class TimestampSpec(ConfigModel):
    """How a stream's timestamps are written.

    ``local``: naive local time in the plant's time zone (``format``); ``utc``: ISO text or a
    typed timestamp in UTC; ``epoch_ms``: milliseconds since the epoch; ``sequence``: no clock at
    all - a synthetic time index ``start + field * step_seconds`` (labelled synthetic).
    """

    field: str | None = None
    kind: Literal["local", "utc", "epoch_ms", "sequence"]
    format: str | None = None
    start: dt.datetime | None = None
    step_seconds: float | None = None

    @model_validator(mode="after")
    def _sequence_needs_start(self) -> TimestampSpec:
        if self.kind == "sequence" and (self.start is None or not self.step_seconds):
            raise ValueError("kind 'sequence' needs 'start' and 'step_seconds'")
        if self.kind == "sequence" and self.field is None:
            raise ValueError("kind 'sequence' needs 'field' (the sequence number column)")
        return self


def _file_name_pattern(pattern: str, group: str) -> str:
    """Check a ``from_filename`` regular expression: it compiles and has the named ``group``."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"from_filename {pattern!r} is not a regular expression: {exc}") from exc
    if group not in rx.groupindex:
        raise ValueError(
            f"from_filename {pattern!r} needs a named group (?P<{group}>...) that captures the "
            f"{group} id"
        )
    return pattern


def from_file_name(pattern: str, group: str, rel_path: str) -> str | None:
    """The ``group`` captured by ``pattern`` (searched) in a landing file's path relative to the
    plant's landing folder (``2026-03-16/R1/BATCH-0042.csv``); None when it does not match or
    captures nothing. The one place a file name gives a batch or machine id."""
    m = re.search(pattern, rel_path)
    value = m.group(group) if m else None
    return value or None


class MachineSpec(ConfigModel):
    """Where a reading's machine comes from: a ``field`` of the record, a ``constant`` (a plant
    or stream with one machine), or ``from_filename``: a regular expression with a named group
    ``machine``, searched in the file's path below the plant's landing folder (e.g.
    ``"^[^/]+/(?P<machine>R\\d+)/"`` for ``2026-03-16/R1/BATCH-0042.csv``)."""

    field: str | None = None
    constant: str | None = None
    from_filename: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> MachineSpec:
        if sum(x is not None for x in (self.field, self.constant, self.from_filename)) != 1:
            raise ValueError("give exactly one of 'field', 'constant' or 'from_filename'")
        if self.from_filename is not None:
            _file_name_pattern(self.from_filename, "machine")
        return self


class BatchSpec(ConfigModel):
    """Readings delivered one file per batch (or cycle): each file holds one batch's time series,
    one row per time. The batch id is the unit id of the units stream (the batch's readings must
    belong to a unit of their day, as inspections must); it comes from a ``field`` of the file or
    ``from_filename``: a regular expression with a named group ``batch``, searched in the file's
    path below the plant's landing folder (``"(?P<batch>[A-Z0-9-]+)\\.csv$"``).

    Time: without ``elapsed_seconds`` the stream's ``timestamp`` is each row's own (absolute)
    time and the batch starts at its earliest row. With ``elapsed_seconds`` (the column holding
    seconds since the batch start, e.g. ``t_s``) the ``timestamp`` field is the batch start (a
    column of the file, e.g. ``batch_start``) and a row is read at start + elapsed seconds - as a
    sample of the ``array`` layout is read at its cycle start + its offset. Either way a batch
    belongs to the local day it starts, even when it runs past midnight."""

    field: str | None = None
    from_filename: str | None = None
    elapsed_seconds: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> BatchSpec:
        if (self.field is None) == (self.from_filename is None):
            raise ValueError("give exactly one of 'field' or 'from_filename' (the batch id)")
        if self.from_filename is not None:
            _file_name_pattern(self.from_filename, "batch")
        return self


#: What each record field of a readings stream is (by its config path below streams.readings).
RECORD_ROLES = {
    "machine.field": "machine",
    "timestamp.field": "timestamp",
    "batch.field": "batch id",
    "batch.elapsed_seconds": "elapsed time",
}

#: the longest time after (or before) its start a row of a batch may lie: 10 years
MAX_ELAPSED_SECONDS = 10 * 366 * 86400


class QuantityMapping(ConfigModel):
    """A source field holding one quantity. The mapping's key names the quantity; with
    ``quantity`` the key is instead a *channel* of that quantity (``TS1: {field: TS1, unit: degC,
    quantity: temperature}``): several sensors of one quantity on a machine, kept apart in the
    standard (``sensor_readings.channel``) and in the features (``temperature@TS1__mean``)."""

    field: str
    unit: str
    quantity: str | None = None
    #: The sample interval of this channel (one sampled faster or slower than the plant's
    #: ``reading_interval_seconds``; None = the plant's). Required in layout ``array``, where
    #: sample i of a record lies at the record's time + (i - first_index) x interval_seconds.
    interval_seconds: float | None = Field(None, gt=0)


class LongLayout(ConfigModel):
    quantity_field: str
    value_field: str
    unit_field: str | None = None


#: ``{i}`` (or ``{i:03d}`` etc.) in an ``array`` layout field: where the sample index goes
SAMPLE_INDEX = re.compile(r"\{i(?::([^{}]*))?\}")
#: the shortest sample interval: sample times are kept to the microsecond
MIN_SAMPLE_INTERVAL_S = 1e-6


class ArrayLayout(ConfigModel):
    """Readings of one production cycle (or batch) in one record, one column per sample: test rigs
    and presses export e.g. 60 temperature columns at 1 Hz and 600 pressure columns at 10 Hz in
    the same row. Each mapping of ``quantities`` has a column family as ``field``, with ``{i}``
    where the sample index goes (``T_{i}``: ``T_1`` ... ``T_60``; ``T_{i:03d}``: ``T_001`` ...),
    and its own ``interval_seconds``. ``samples`` gives, per mapping key of ``quantities``, the
    number of sample columns: every record carries that many values of it (a cell left empty is
    quarantined as ``missing_value``, a column the file lacks as ``missing_required_column``).
    ``first_index``: the index of the first sample column (1, or 0 for exports counting from 0).
    Sample i is read at the record's time (the cycle start) + (i - first_index) x interval."""

    samples: dict[str, Annotated[int, Field(ge=1)]]
    first_index: int = Field(1, ge=0)


class StreamBase(ConfigModel):
    format: Literal["csv", "parquet", "jsonl"]
    path: str
    csv: CsvOptions = Field(default_factory=CsvOptions)
    ignore_fields: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _inside_landing(cls, v: str) -> str:
        p = PurePosixPath(v.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or not p.parts or "**" in p.parts:
            raise ValueError(
                f"{v!r} must be a relative file pattern inside the plant's landing folder "
                "(no absolute path, no '..', no '**')"
            )
        return v

    @property
    def per_day_files(self) -> bool:
        """True when files are laid out per local day (``{date}`` in the path)."""
        return "{date}" in self.path


class ReadingsStream(StreamBase):
    timestamp: TimestampSpec
    machine: MachineSpec
    #: ``wide``: one record per time and machine, a column per quantity; ``long``: one record per
    #: value (``long`` section); ``array``: one record per cycle, a column per sample
    #: (``array`` section, see :class:`ArrayLayout`)
    layout: Literal["wide", "long", "array"]
    header_units: bool = False
    explode: str | None = None
    parent_fields: list[str] = Field(default_factory=list)
    long: LongLayout | None = None
    array: ArrayLayout | None = None
    #: one file per batch (or cycle), see :class:`BatchSpec`
    batch: BatchSpec | None = None
    quantities: dict[str, QuantityMapping]

    @model_validator(mode="after")
    def _layout(self) -> ReadingsStream:
        if self.batch is not None:
            self._check_batch()
        if self.layout == "long" and self.long is None:
            raise ValueError("layout 'long' needs a 'long' section")
        if self.explode and self.format != "jsonl":
            raise ValueError("'explode' is only for format 'jsonl'")
        if (self.layout == "array") != (self.array is not None):
            raise ValueError(
                "layout 'array' needs an 'array' section (samples per quantity)"
                if self.array is None
                else f"an 'array' section is only for layout 'array' (the layout is {self.layout!r})"
            )
        if self.layout == "array":
            self._check_array()
        if self.layout in ("wide", "array"):
            seen: dict[str, str] = {}
            for q in self.quantities:
                for col, _ in self.sample_columns(q):
                    if col in seen:  # one column cannot hold two quantities; one would be dropped
                        what = "sample column" if self.layout == "array" else "field"
                        raise ValueError(
                            f"quantities {seen[col]!r} and {q!r} both map {what} {col!r}"
                        )
                    seen[col] = q
            for role, name in self.record_fields():
                if name in seen:
                    raise ValueError(
                        f"field {name!r} is the {RECORD_ROLES[role]} and quantity "
                        f"{seen[name]!r} at once"
                    )
        return self

    def record_fields(self) -> list[tuple[str, str]]:
        """(role, source field) of the fields that place every record rather than hold values:
        its machine, time and, for one file per batch, batch id and elapsed seconds (roles are
        the config paths of :data:`RECORD_ROLES`; roles without a field are left out)."""
        b = self.batch
        named = (
            ("machine.field", self.machine.field),
            ("timestamp.field", self.timestamp.field),
            ("batch.field", b.field if b else None),
            ("batch.elapsed_seconds", b.elapsed_seconds if b else None),
        )
        return [(role, name) for role, name in named if name]

    def _check_batch(self) -> None:
        assert self.batch is not None
        if self.layout == "array":
            raise ValueError(
                "'batch' (one file per batch, a row per time) is not for layout 'array' (a row "
                "per cycle); use layout 'wide' or 'long'"
            )
        if self.timestamp.kind == "sequence":
            raise ValueError(
                "'batch' needs a clock: timestamp kind 'local', 'utc' or 'epoch_ms' (with "
                "batch.elapsed_seconds: the batch start)"
            )
        if self.timestamp.field is None:
            raise ValueError("'batch' needs 'timestamp.field' (a row's time or the batch start)")
        seen: dict[str, str] = {}
        for role, name in self.record_fields():
            if name in seen:
                raise ValueError(f"field {name!r} is both {seen[name]} and {role}")
            seen[name] = role

    def _check_array(self) -> None:
        assert self.array is not None
        if self.explode:
            raise ValueError("'explode' (a list of readings per record) is not for layout 'array'")
        lacking = [q for q in self.quantities if q not in self.array.samples]
        if lacking:
            raise ValueError(
                f"array.samples has no sample count for {lacking} "
                "(the number of sample columns per record)"
            )
        extra = [q for q in self.array.samples if q not in self.quantities]
        if extra:
            raise ValueError(f"array.samples names {extra}, which 'quantities' does not map")
        for q, m in self.quantities.items():
            if len(SAMPLE_INDEX.findall(m.field)) != 1:
                raise ValueError(
                    f"quantities.{q}.field {m.field!r} must hold the sample index once, as "
                    "'{i}' (e.g. 'T_{i}' for T_1, T_2, ...; 'T_{i:03d}' for T_001, ...)"
                )
            try:
                format(0, SAMPLE_INDEX.search(m.field).group(1) or "")  # type: ignore[union-attr]
            except ValueError as exc:
                raise ValueError(f"quantities.{q}.field {m.field!r}: {exc}") from exc
            if m.interval_seconds is None:
                raise ValueError(
                    f"quantities.{q} needs 'interval_seconds' in layout 'array' (the time "
                    "between two of its samples; each channel may have its own)"
                )
            if m.interval_seconds < MIN_SAMPLE_INTERVAL_S:
                raise ValueError(
                    f"quantities.{q}.interval_seconds {m.interval_seconds} is below "
                    f"{MIN_SAMPLE_INTERVAL_S} s; sample times are kept to the microsecond"
                )

    def sample_columns(self, key: str) -> list[tuple[str, float]]:
        """The source columns of the mapping ``key`` of ``quantities``, with each one's offset in
        seconds from the record's time: in layout ``array`` its sample columns (sample i at
        (i - first_index) x interval_seconds), otherwise its one field at offset 0."""
        m = self.quantities[key]
        if self.array is None:
            return [(m.field, 0.0)]
        first, step = self.array.first_index, m.interval_seconds or 0.0
        g = SAMPLE_INDEX.search(m.field)
        if g is None:
            raise ValueError(f"field {m.field!r} has no sample index '{{i}}'")
        head, spec, tail = m.field[: g.start()], g.group(1) or "", m.field[g.end() :]
        return [
            (f"{head}{format(i, spec)}{tail}", (i - first) * step)
            for i in range(first, first + self.array.samples.get(key, 0))
        ]

    @property
    def values_per_record(self) -> int:
        """How many values one record carries: one per quantity (wide), one per sample of each
        quantity (array), one (long)."""
        if self.array is not None:
            return sum(self.array.samples[q] for q in self.quantities)
        return len(self.quantities) if self.layout == "wide" else 1


UNIT_FIELDS = (
    "unit_id",
    "line",
    "machine_id",
    "start",
    "end",
    "product",
    "material_lot",
    "supplier",
    "operator",
)


class UnitsStream(StreamBase):
    timestamp: TimestampSpec
    fields: dict[str, str]
    constants: dict[str, str] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _known(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = set(v) - set(UNIT_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown canonical unit field(s) {sorted(unknown)}; known: {UNIT_FIELDS}"
            )
        if "unit_id" not in v:
            raise ValueError("'unit_id' must be mapped")
        return v

    @model_validator(mode="after")
    def _window(self) -> UnitsStream:
        if self.timestamp.kind != "sequence":  # a sequence gives the start; the end is one step on
            lacking = [
                k for k in ("start", "end") if k not in self.fields and k not in self.constants
            ]
            if lacking:
                raise ValueError(
                    f"fields {lacking} must be mapped: a unit's production window "
                    "(start, end) places it on its day and selects its readings"
                )
        return self


class OutcomeRule(ConfigModel):
    """A rule on numeric inspection or lab fields that makes a unit ``then``: a threshold on one
    field - ``{field: dissolution_pct, below: 80, then: scrap}`` for "dissolution below 80 %"; the
    bound itself passes - or a condition over several, ``{expression: "assay_pct < 95 or
    assay_pct > 105", then: rework}`` (+ - * /, comparisons, and/or/not; see
    :mod:`quality_platform.expressions`). A source field whose name is no Python identifier is
    named in the expression by an alias: ``fields: {d: "Dissolution [%]"}``."""

    field: str | None = None
    below: float | None = None
    above: float | None = None
    expression: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    then: Literal["rework", "scrap"]
    #: the expression's tree and names (None for a threshold), from the validator
    _parsed: tuple[Any, list[str]] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_kind(self) -> OutcomeRule:
        if self.expression is None:
            if self.field is None:
                raise ValueError("give 'field' with 'below' or 'above', or an 'expression'")
            if (self.below is None) == (self.above is None):
                raise ValueError("give exactly one of 'below' or 'above'")
            if self.fields:
                raise ValueError("'fields' (aliases) is for an 'expression'")
            return self
        if self.field is not None or self.below is not None or self.above is not None:
            raise ValueError("give either 'field' with a bound or an 'expression', not both")
        tree, names = parse_expression(self.expression, "expression", CONDITION, CONDITION_OPS)
        if not names:
            raise ValueError(f"expression {self.expression!r} reads no field")
        unused = sorted(set(self.fields) - set(names))
        if unused:
            raise ValueError(f"alias(es) {unused} in 'fields' are not used by the expression")
        self._parsed = (tree, names)  # parsed once, when the config is loaded
        return self

    @property
    def reads(self) -> list[str]:
        """The source fields the rule reads, in order."""
        if self._parsed is None:
            return [self.field] if self.field else []
        return [self.fields.get(n, n) for n in self._parsed[1]]

    def hits(self, measured: dict[str, Any]) -> Any:
        """Where the rule hits, for the values of each source field it reads (numbers or numeric
        arrays/series; a missing value makes a threshold or comparison false)."""
        if self.expression is None:
            value = measured[self.field]
            return value < self.below if self.below is not None else value > self.above
        assert self._parsed is not None
        tree, names = self._parsed
        return evaluate_condition(tree, {n: measured[self.fields.get(n, n)] for n in names})


class OutcomeSpec(ConfigModel):
    """Inspection outcome: 0/1 flag columns, one categorical column, or threshold ``rules`` on
    measured fields (scrap when any scrap rule hits, else rework when any rework rule hits, else
    ok; a measurement that is not a number is held back)."""

    flags: dict[Literal["rework", "scrap"], str] | None = None
    field: str | None = None
    values: dict[str, Literal["ok", "rework", "scrap"]] | None = None
    rules: list[OutcomeRule] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> OutcomeSpec:
        if sum(x is not None for x in (self.flags, self.field, self.rules)) != 1:
            raise ValueError("give one of 'flags', 'field' + 'values', or 'rules'")
        if self.field is not None and not self.values:
            raise ValueError("'field' needs 'values' (source value -> ok|rework|scrap)")
        return self

    @property
    def measured_fields(self) -> list[str]:
        """The source fields the ``rules`` read, each once, in order."""
        return list(dict.fromkeys(f for r in self.rules or [] for f in r.reads))

    def rule_outcome(self, measured: dict[str, Any]) -> tuple[Any, Any]:
        """(rework, scrap): where any rework rule and where any scrap rule hits, for the values of
        each measured field (arrays or series; a missing value hits no rule). Where both hit, the
        unit counts as scrap (the KPIs' rule)."""
        hit: dict[str, Any] = {"rework": False, "scrap": False}
        for r in self.rules or []:
            hit[r.then] = hit[r.then] | r.hits(measured)
        return hit["rework"], hit["scrap"]


class InspectionsStream(StreamBase):
    timestamp: TimestampSpec
    fields: dict[Literal["unit_id", "inspected_at"], str]
    outcome: OutcomeSpec


class AttributeValue(ConfigModel):
    """The source field holding one attribute quantity of a unit, and its unit label."""

    field: str
    unit: str


class AttributesStream(StreamBase):
    """Values that belong to a unit (batch), not to a time series: raw-material properties (API
    particle size, excipient moisture), recipe set-points, supplier certificate values - one
    record per unit, keyed by its id. ``values`` maps each quantity (shared or plant-local) to its
    source field and unit label; a record lands on its unit's day, as an inspection does."""

    fields: dict[Literal["unit_id"], str]
    values: dict[str, AttributeValue] = Field(min_length=1)

    @model_validator(mode="after")
    def _fields_once(self) -> AttributesStream:
        if "unit_id" not in self.fields:
            raise ValueError("'fields' must map 'unit_id' (the unit a record belongs to)")
        seen = {self.fields["unit_id"]: "fields.unit_id"}
        for q, v in self.values.items():
            if v.field in seen:  # one column cannot be two values; one would be dropped
                raise ValueError(
                    f"source field {v.field!r} is mapped twice: {seen[v.field]} and values.{q}.field"
                )
            seen[v.field] = f"values.{q}.field"
        return self


class Streams(ConfigModel):
    readings: ReadingsStream
    units: UnitsStream
    inspections: InspectionsStream
    #: optional: unit-level attributes joined to the units by id (see :class:`AttributesStream`)
    attributes: AttributesStream | None = None

    @model_validator(mode="after")
    def _inspections_follow_units(self) -> Streams:
        ins = self.inspections
        if not ins.per_day_files and ins.timestamp.kind != "sequence" and self.units.per_day_files:
            raise ValueError(
                f"inspections.path {ins.path!r} is one file for many days, so each inspection "
                "lands on its unit's day, taken from the units file; units.path "
                f"{self.units.path!r} must then be one file for many days too (no '{{date}}')"
            )
        att = self.attributes
        if att is not None and not att.per_day_files and self.units.per_day_files:
            raise ValueError(
                f"attributes.path {att.path!r} is one file for many days, so each record "
                "lands on its unit's day, taken from the units file; units.path "
                f"{self.units.path!r} must then be one file for many days too (no '{{date}}')"
            )
        return self


def _valid_formula(v: str) -> str:
    parse_formula(v)
    return v


Formula = Annotated[str, AfterValidator(_valid_formula)]
"""A KPI formula (+ - * / over the daily counts), checked when the config is loaded."""


class LegacyKpi(ConfigModel):
    name: str
    maps_to: str
    formula: Formula
    scale: float = 1.0
    unit: str = "ratio"
    note: str


class LandingLimits(ConfigModel):
    """Bounds on what one landing file may hold (per plant, ``landing_limits`` in its YAML).

    A file, line or record beyond them is quarantined with the limit it broke (``file_too_large``,
    ``line_too_long``, ``too_many_fields``) and counted; it never exhausts memory or fails the run.
    """

    max_file_bytes: int = Field(512 * 2**20, gt=0)
    max_line_bytes: int = Field(2**20, gt=0)
    max_fields: int = Field(1000, gt=0)


class PlantConfig(ConfigModel):
    plant_id: str
    name: str
    source: Literal["simulated", "real"]
    timezone: str
    owner: str
    description: str = ""
    landing_dir: str | None = None
    machines: list[str] = Field(min_length=1)
    reading_interval_seconds: float = Field(gt=0)
    #: Days after its production day by which a unit's inspection outcome is known. Training data
    #: only takes days whose labels are complete (day + latency <= the latest landed day).
    label_latency_days: int = Field(3, ge=0, le=60)
    #: Days of labelled history a training snapshot takes from this plant; None = the model's
    #: ``training.window_days`` (data/ml/model.yaml). A plant producing one batch every few days
    #: needs a longer window than one producing a unit a minute.
    training_window_days: int | None = Field(None, ge=1, le=3650)
    #: First local day of this plant's history, when it lies before the platform's partition
    #: start (data/platform.yaml): the partitions then begin there, so the history can be landed
    #: without editing the platform file.
    history_start: dt.date | None = None
    personal_data: list[str] = Field(default_factory=list)
    streams: Streams
    legacy_kpis: list[LegacyKpi] = Field(default_factory=list)
    landing_limits: LandingLimits = Field(default_factory=LandingLimits)
    #: Plant-local quantities (measured, or derived with an ``expression``), declared here
    #: instead of in the shared list ``data/standard/quantities.yaml``, which stays the
    #: vocabulary for cross-plant comparison. A name may not shadow a shared quantity.
    quantities: dict[str, QuantitySpec] = Field(default_factory=dict)

    @field_validator("quantities")
    @classmethod
    def _local_names(cls, v: dict[str, QuantitySpec]) -> dict[str, QuantitySpec]:
        bad = [q for q in v if not QUANTITY_NAME_RE.match(q)]
        if bad:
            raise ValueError(
                f"quantity name(s) {bad} must be lower-case letters, digits and '_', "
                "starting with a letter"
            )
        return v

    @field_validator("plant_id")
    @classmethod
    def _plant_id(cls, v: str) -> str:
        if not PLANT_ID_RE.match(v):
            raise ValueError(
                "must be lower-case letters, digits and '_' (2-31 chars), starting with a letter"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def signals(self) -> dict[str, tuple[str, str | None]]:
        """Each readings mapping key -> (quantity, channel): a key is a quantity (channel None)
        or, with ``quantity:``, a channel of that quantity."""
        return {
            k: (m.quantity or k, k if m.quantity not in (None, k) else None)
            for k, m in self.streams.readings.quantities.items()
        }

    def landing_path(self, paths: Paths) -> Path:
        """Folder holding this plant's landing files."""
        if self.landing_dir is None:
            return paths.landing_dir / self.plant_id
        p = Path(self.landing_dir)
        return p if p.is_absolute() else paths.config_dir / p


# --------------------------------------------------------------------------- KPIs


class KpiDefinition(ConfigModel):
    id: str
    name: str
    formula: Formula
    unit: str
    owner: str
    version: int = Field(ge=1)
    description: str


class KpiRegistry(ConfigModel):
    registry_version: int
    kpis: list[KpiDefinition]

    @model_validator(mode="after")
    def _unique(self) -> KpiRegistry:
        ids = [k.id for k in self.kpis]
        if len(ids) != len(set(ids)):
            raise ValueError("KPI ids must be unique")
        return self

    def get(self, kpi_id: str) -> KpiDefinition:
        for k in self.kpis:
            if k.id == kpi_id:
                return k
        raise KeyError(kpi_id)


# --------------------------------------------------------------------------- platform


class PartitionSettings(ConfigModel):
    start_date: dt.date


class QualitySettings(ConfigModel):
    completeness_warn_below: float = Field(0.95, ge=0, le=1)
    completeness_error_below: float = Field(0.5, ge=0, le=1)
    future_tolerance_minutes: float = Field(10, ge=0)
    partition_grace_minutes: float = Field(60, ge=0)


class PlatformConfig(ConfigModel):
    partitions: PartitionSettings
    quality: QualitySettings = Field(default_factory=QualitySettings)


def partitions_start(platform: PlatformConfig, plants: dict[str, PlantConfig]) -> dt.date:
    """The first day of the plant x day partitions: the platform's ``start_date``, or the earliest
    ``history_start`` of a plant whose history is older (Dagster's partitions share one start)."""
    return min(
        [platform.partitions.start_date]
        + [p.history_start for p in plants.values() if p.history_start is not None]
    )


# --------------------------------------------------------------------------- formulas


def parse_formula(formula: str) -> ast.Expression:
    """Parse a KPI formula: + - * / and parentheses over the daily count names."""
    tree, names = parse_expression(formula, "formula")
    unknown = [n for n in names if n not in COUNT_NAMES]
    if unknown:
        raise ValueError(
            f"formula {formula!r} uses unknown count {unknown[0]!r}; known: {COUNT_NAMES}"
        )
    return tree


# --------------------------------------------------------------------------- loading


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: YAML itself
    keeps the last one silently (two columns mapped to ``temperature`` would drop one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable keys are rejected by the base loader with its own message
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"in the mapping starting on line {node.start_mark.line + 1}",
                    node.start_mark,
                    f"key {key!r} is given twice (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1}); YAML would silently keep the last",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping
)


def read_yaml(text: str) -> Any:
    """Parse YAML text safely, rejecting duplicate keys (the loader every config file uses)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def load_yaml_model(path: Path, model: type[ConfigModel]) -> Any:
    """Load ``path`` into ``model``; errors name the file and the field."""
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"field '{_fmt_loc(e['loc'])}': {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc


def load_plants(paths: Paths | None = None) -> dict[str, PlantConfig]:
    """All plant configs in ``data/plants/*.yaml``, keyed by plant id, sorted."""
    paths = paths or get_paths()
    quantities = load_quantities(paths)
    kpi_ids = {k.id for k in load_kpis(paths).kpis}
    plants: dict[str, PlantConfig] = {}
    for f in sorted(paths.plants_dir.glob("*.yaml")):
        plant = load_yaml_model(f, PlantConfig)
        if plant.plant_id != f.stem:
            raise ConfigError(
                f"{f}: field 'plant_id': {plant.plant_id!r} must match the file name {f.stem!r}"
            )
        _check_plant_against_registry(f, plant, quantities, kpi_ids)
        plants[plant.plant_id] = plant
    if not plants:
        raise ConfigError(f"{paths.plants_dir}: no plant configuration (*.yaml) found")
    return plants


CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def signal_name(quantity: str, channel: str | None) -> str:
    """The name of a measured signal in the features: the quantity, or ``<quantity>@<channel>``."""
    return quantity if channel is None else f"{quantity}{CHANNEL_SEP}{channel}"


def _check_plant_against_registry(
    f: Path, plant: PlantConfig, reg: QuantityRegistry, kpi_ids: set[str]
) -> None:
    from quality_platform.units import check_convertible, check_expression

    for q in plant.quantities:
        if q in reg.quantities:
            raise ConfigError(
                f"{f}: field 'quantities.{q}': {q!r} is a shared quantity of "
                "data/standard/quantities.yaml; a plant-local quantity needs its own name"
            )
    known = {**reg.quantities, **plant.quantities}
    for q, spec in plant.quantities.items():
        try:
            check_convertible(reg.pint_unit(spec.unit), spec.unit)
            if spec.expression is not None:
                check_expression(q, spec, known)
        except ValueError as exc:
            where = "expression" if spec.expression is not None else "unit"
            raise ConfigError(f"{f}: field 'quantities.{q}.{where}': {exc}") from exc
    measured = sorted(k for k, s in known.items() if s.expression is None)

    def measured_quantity(field: str, q: str, unit_label: str, unit_field: str) -> None:
        """A file delivers ``q`` at ``field`` in ``unit_label``: it must be a known quantity, not
        a derived one, and pint must convert the label into the quantity's unit."""
        if q not in known:
            raise ConfigError(
                f"{f}: field '{field}': unknown quantity {q!r}; known: {measured} (a plant-local "
                "quantity is declared under 'quantities' of the plant file)"
            )
        if known[q].expression is not None:
            raise ConfigError(
                f"{f}: field '{field}': {q!r} is derived (expression {known[q].expression!r}); "
                "it is computed, not read from a file"
            )
        try:
            check_convertible(reg.pint_unit(unit_label), known[q].unit)
        except ValueError as exc:
            raise ConfigError(f"{f}: field '{unit_field}': {exc}") from exc

    for k, (q, channel) in plant.signals().items():
        m = plant.streams.readings.quantities[k]
        where = f"streams.readings.quantities.{k}"
        if channel is not None and not CHANNEL_RE.match(channel):
            raise ConfigError(
                f"{f}: field '{where}': a channel name is letters, digits, "
                "'_', '.' and '-' (1-40 characters, starting with a letter or digit)"
            )
        if channel is not None and channel in known:
            raise ConfigError(
                f"{f}: field '{where}': channel name {k!r} is also a "
                "quantity; name the channel after its sensor or position (e.g. TS1)"
            )
        measured_quantity(where + (".quantity" if m.quantity else ""), q, m.unit, f"{where}.unit")
    att = plant.streams.attributes
    for q, v in (att.values if att is not None else {}).items():
        where = f"streams.attributes.values.{q}"
        measured_quantity(where, q, v.unit, f"{where}.unit")
    for i, lk in enumerate(plant.legacy_kpis):
        if lk.maps_to not in kpi_ids:
            raise ConfigError(f"{f}: field 'legacy_kpis.{i}.maps_to': unknown KPI {lk.maps_to!r}")


@lru_cache(maxsize=8)
def _load_quantities_cached(path: Path, mtime: float) -> QuantityRegistry:
    return load_yaml_model(path, QuantityRegistry)


def load_quantities(paths: Paths | None = None) -> QuantityRegistry:
    """The canonical quantity registry (``data/standard/quantities.yaml``)."""
    p = (paths or get_paths()).quantities_file
    return _load_quantities_cached(p, p.stat().st_mtime if p.exists() else 0.0)


def merged_registry(
    shared: QuantityRegistry, plants: dict[str, PlantConfig], plants_dir: Path
) -> QuantityRegistry:
    """The shared quantities plus every plant's local ones: what the standard may hold and the
    features compute. A local name two plants declare differently is an error naming both files
    (a same-named quantity means the same thing everywhere)."""
    merged = dict(shared.quantities)
    owner: dict[str, str] = {}
    for pid in sorted(plants):
        for q, spec in plants[pid].quantities.items():
            if q in owner and merged[q] != spec:
                raise ConfigError(
                    f"{plants_dir / (pid + '.yaml')}: field 'quantities.{q}': declared differently "
                    f"in {plants_dir / (owner[q] + '.yaml')}; a plant-local quantity of the same "
                    "name must have the same unit, range, description and expression (or another name)"
                )
            owner.setdefault(q, pid)
            merged[q] = spec
    out = shared.model_copy(update={"quantities": merged})
    out._channels = {
        signal_name(q, ch): q
        for p in plants.values()
        for q, ch in p.signals().values()
        if ch is not None
    }
    out._attributes = {
        q
        for p in plants.values()
        if p.streams.attributes is not None
        for q in p.streams.attributes.values
    }
    return out


def load_registry(paths: Paths | None = None) -> QuantityRegistry:
    """The quantities in force: ``data/standard/quantities.yaml`` and the plants' local ones."""
    paths = paths or get_paths()
    return merged_registry(load_quantities(paths), load_plants(paths), paths.plants_dir)


def load_kpis(paths: Paths | None = None) -> KpiRegistry:
    """The unified KPI registry (``data/kpis.yaml``)."""
    return load_yaml_model((paths or get_paths()).kpi_file, KpiRegistry)


def load_platform(paths: Paths | None = None) -> PlatformConfig:
    """Platform-wide settings (``data/platform.yaml``)."""
    return load_yaml_model((paths or get_paths()).platform_file, PlatformConfig)
