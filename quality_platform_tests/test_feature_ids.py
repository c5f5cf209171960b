"""Every feature id the code, the config or the README cites is defined in
quality_platform/feature_ids.py, and the README's table lists exactly those ids."""

from __future__ import annotations

import re
from pathlib import Path

from quality_platform.feature_ids import FEATURES

ROOT = Path(__file__).resolve().parents[1]
ID = re.compile(r"\bF([1-9][0-9]?)\b")


def _cited(files: list[Path]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in files:
        for m in ID.finditer(f.read_text(encoding="utf-8")):
            out.setdefault(f"F{m.group(1)}", set()).add(str(f.relative_to(ROOT)))
    return out


def test_every_cited_feature_id_is_defined() -> None:
    files = [p for p in (ROOT / "quality_platform").rglob("*.py") if p.name != "feature_ids.py"]
    files += [*(ROOT / "data").glob("**/*.yaml"), ROOT / "README.md"]
    cited = _cited([f for f in files if f.is_file()])
    assert cited, "no feature id cited anywhere: the pattern is wrong"
    unknown = {k: sorted(v) for k, v in cited.items() if k not in FEATURES}
    assert not unknown, (
        f"feature ids cited but not defined in quality_platform/feature_ids.py: {unknown}"
    )


def test_readme_table_lists_the_defined_ids() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Feature ids", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (F[0-9]+) \|", section, flags=re.M)
    assert rows == list(FEATURES), (
        "README's feature id table differs from quality_platform/feature_ids.py"
    )
