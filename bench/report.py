# ruff: noqa: RUF001, RUF002
"""The main table of bench.py: one row per metric, one column per system, ratios to Node
and to the Python peers."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

#: Every system of the main table, in column order.
SYSTEMS = ("py", "node", "pgq", "proc")
LABEL = {"py": "graphile-py", "node": "Node", "pgq": "PgQueuer", "proc": "procrastinate"}


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt_num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text + unit


@dataclasses.dataclass
class Row:
    """One metric: the values of every run per system, or a note instead of values."""

    metric: str
    unit: str
    higher_is_better: bool
    values: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {system: [] for system in SYSTEMS}
    )
    note: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, system: str, value: float) -> None:
        if not math.isnan(value):
            self.values[system].append(value)

    def cell(self, system: str) -> str:
        if system in self.note:
            return self.note[system]
        values = self.values[system]
        if not values:
            return "n/a"
        mid = fmt_num(median(values), self.unit)
        if len(values) > 1:
            return f"{mid} ({fmt_num(min(values))}–{fmt_num(max(values))})"
        return mid

    def ratio(self, other: str) -> str:
        """graphile-py's median over ``other``'s, or "–" where either is missing."""
        py, them = self.values["py"], self.values[other]
        if not py or not them or "py" in self.note or other in self.note or not median(them):
            return "–"
        return f"{median(py) / median(them):.2f}"

    def verdict(self) -> tuple[str, str]:
        """The ratio to Node and what it means for graphile-py."""
        ratio = self.ratio("node")
        if ratio == "–":
            return "–", "–"
        value = median(self.values["py"]) / median(self.values["node"])
        factor = value if self.higher_is_better else 1 / value if value else math.inf
        if 0.95 <= factor <= 1.05:
            word = "same (±5%)"
        elif factor > 1:
            word = f"better ({factor:.2f}×)"
        else:
            word = f"worse ({1 / factor:.2f}×)"
        return ratio, word


def markdown_table(rows: Sequence[Row], systems: Sequence[str] = SYSTEMS) -> str:
    """Every system side by side, then graphile-py's ratio to each other system."""
    others = [system for system in systems if system != "py"]
    header = (
        "| metric | "
        + " | ".join(LABEL[s] for s in systems)
        + " | "
        + " | ".join(f"py/{LABEL[s]}" for s in others)
        + " | graphile-py vs Node |"
    )
    lines = [header, "|---|" + "---:|" * (len(systems) + len(others)) + "---|"]
    for row in rows:
        cells = [row.cell(s) for s in systems] + [row.ratio(s) for s in others]
        lines.append(f"| {row.metric} | " + " | ".join(cells) + f" | {row.verdict()[1]} |")
    return "\n".join(lines)


def exactly_once_row(
    checked: dict[str, int], exact: dict[str, list[str]], systems: Sequence[str] = SYSTEMS
) -> Row:
    row = Row("each job ran exactly once (checked per drain run)", "", True)
    for system in systems:
        if not checked.get(system):
            row.note[system] = "n/a (not run)"
        elif exact.get(system):
            row.note[system] = "NO: " + "; ".join(exact[system])
        else:
            row.note[system] = f"yes, {checked[system]}/{checked[system]} runs"
    return row
