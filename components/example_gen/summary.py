"""The example generator's summary: rows read, windows per split and series, what was dropped and why.

Written as ``windows_summary.json`` into the Examples artifact and printed by ``run`` and ``windows``.
"""

import collections
import json
from typing import Any, Sequence

from components import windowing
from components.example_gen.options import WindowingOptions


def summarize(file_reports: Sequence[dict[str, Any]], series_reports: Sequence[dict[str, Any]],
              options: WindowingOptions) -> dict[str, Any]:
    """The run's summary: rows read, windows per split and series, and what was dropped and why."""
    series_reports = sorted(series_reports, key=lambda r: r["series_id"])
    windows = {s: sum(r["windows"][s] for r in series_reports) for s in windowing.SPLITS}
    dropped_windows = collections.Counter()
    for report in series_reports:
        dropped_windows.update(report.get("dropped_windows", {}))
    frequencies = collections.Counter(r["frequency"] for r in series_reports)
    return {
        "options": json.loads(options.to_json()),
        "files": len(file_reports),
        "rows_read": sum(r["rows"] for r in file_reports),
        "series": len(series_reports),
        "series_windowed": sum(1 for r in series_reports if not r["skipped"]),
        "series_skipped": [{"series_id": r["series_id"], "reason": r["skipped"], "rows": r["rows"]}
                           for r in series_reports if r["skipped"]],
        "rows_in_skipped_series": sum(r["rows"] for r in series_reports if r["skipped"]),
        "frequencies": dict(frequencies),
        "frequency_inferred": options.data.frequency is None,
        "rows_merged_as_duplicates": sum(r["duplicates_merged"] for r in series_reports),
        "missing_points": sum(r["missing_points"] for r in series_reports),
        "hints": [r["hint"] for r in series_reports if r.get("hint")],
        "interpolated_points": sum(r["interpolated_points"] for r in series_reports),
        "windows": windows,
        "dropped_windows": {k: dropped_windows[k] for k in ("incomplete", "straddling", "split_gap")},
        "per_series": series_reports,
    }


def format_summary(summary: dict[str, Any], max_series: int = 10) -> str:
    """The summary as a short text a person reads at a glance."""
    w, d = summary["windows"], summary["dropped_windows"]
    freq = ", ".join(f"{k} ({v} series)" for k, v in summary["frequencies"].items())
    data = summary.get("options", {}).get("data", {})
    business = f", business hours {data['business_days']} {data['business_hours']}" \
        if data.get("business_hours") else ""
    lines = [
        f"rows read        {summary['rows_read']} from {summary['files']} file(s)",
        f"series           {summary['series']} ({summary['series_windowed']} windowed, "
        f"{len(summary['series_skipped'])} skipped, holding {summary['rows_in_skipped_series']} rows)",
        f"frequency        {freq or '-'}{' (inferred)' if summary['frequency_inferred'] else ''}{business}",
        f"missing points   {summary['missing_points']} ({summary['interpolated_points']} interpolated); "
        f"rows merged as duplicates: {summary['rows_merged_as_duplicates']}",
        f"windows          train {w['train']}, eval {w['eval']}, test {w['test']}",
        f"windows dropped  {d['incomplete']} with a missing point, {d['straddling']} straddling a cut, "
        f"{d['split_gap']} in a split gap",
    ]
    per_series = summary["per_series"]
    if len(per_series) > 1:
        lines.append("per series       " + "; ".join(
            f"{r['series_id']}: {r['windows']['train']}/{r['windows']['eval']}/{r['windows']['test']}"
            for r in per_series[:max_series]) + ("; ..." if len(per_series) > max_series else ""))
    hints = summary.get("hints", [])
    if hints:
        more = f" (and {len(hints) - 1} more series)" if len(hints) > 1 else ""
        lines.append(f"hint             {hints[0]}{more}")
    for skipped in summary["series_skipped"][:max_series]:
        lines.append(f"skipped          series '{skipped['series_id']}' ({skipped['rows']} rows): {skipped['reason']}")
    return "\n".join(lines)
