"""Tabular report objects shared by every lpcv pass and tool.

A :class:`Table` holds rows of plain values and renders them for the three
places users look: pandas (``to_pandas``), text (``to_markdown``,
``__str__``) and Jupyter (``_repr_html_``).
"""
from __future__ import annotations

import html
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

__all__ = ["Table"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "nan"
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


class Table:
    """Rows of named columns with pandas, Markdown and HTML renderings.

    Parameters
    ----------
    rows : iterable of mapping
        One mapping per row; keys are column names.
    columns : sequence of str, optional
        Column order (default: first-seen order of the keys).
    title : str, optional
        Shown above the table.

    Examples
    --------
    >>> t = Table([{"layer": "conv1", "ms": 1.5}, {"layer": "fc", "ms": 0.25}])
    >>> print(t.to_markdown())
    | layer | ms |
    |---|---|
    | conv1 | 1.5 |
    | fc | 0.25 |
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]], columns: Optional[Sequence[str]] = None,
                 title: str = ""):
        self.rows: List[Dict[str, Any]] = [dict(r) for r in rows]
        if columns is None:
            cols: List[str] = []
            for r in self.rows:
                cols.extend(k for k in r if k not in cols)
            columns = cols
        self.columns: List[str] = list(columns)
        self.title = title

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return self.rows[i]

    def column(self, name: str) -> List[Any]:
        """The values of one column."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns are {self.columns}")
        return [r.get(name) for r in self.rows]

    def to_pandas(self):
        """A ``pandas.DataFrame`` (pandas is imported on demand)."""
        import pandas as pd
        return pd.DataFrame([[r.get(c) for c in self.columns] for r in self.rows],
                            columns=self.columns)

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table."""
        lines = ["| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        for r in self.rows:
            lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in self.columns) + " |")
        return ("**" + self.title + "**\n\n" if self.title else "") + "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in self.columns)
            + "</tr>" for r in self.rows)
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        cells = [self.columns] + [[_fmt(r.get(c, "")) for c in self.columns] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        out = [("  ".join(v.ljust(w) for v, w in zip(row, widths))).rstrip() for row in cells]
        out.insert(1, "  ".join("-" * w for w in widths))
        return (self.title + "\n" if self.title else "") + "\n".join(out)

    def __repr__(self) -> str:
        return f"<lpcv Table {self.title!r}: {len(self.rows)} rows × {len(self.columns)} columns>"
