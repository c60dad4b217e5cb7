"""What ``pipesql validate`` writes: golden pairs, quarantine, summary, report and chart."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from pipesql.storage.files import atomic_open, write_json, write_jsonl
from pipesql.validate.check import (BAD_ITEM, CLASSES, DB_CORRUPT, DB_MISSING, GOLD_ERROR, GOLD_NONDETERMINISTIC,
                                     GOLD_UNDEFINED, MATCH, MISMATCH, NOT_A_QUERY, VARIANT_MISMATCH)

# Classes that say the benchmark item is unusable, not that pipesql failed it (grey in the chart).
INPUT_PROBLEMS = (BAD_ITEM, DB_MISSING, DB_CORRUPT, GOLD_ERROR, GOLD_UNDEFINED, GOLD_NONDETERMINISTIC, NOT_A_QUERY)

GOLDEN_PAIRS = "golden_pairs.jsonl"
QUARANTINE = "quarantine.jsonl"
SUMMARY = "summary.json"
REPORT = "report.md"
CHART = "classes.png"
WITNESSES = "witnesses"
EXAMPLES_PER_CLASS = 3


def label_of(record: dict) -> str:
    return record["validation"]["class"]


def gold_executed(record: dict) -> bool:
    """Whether the gold SQL ran (the denominator of the match rate): everything but malformed
    items, database problems, non-queries and gold failures."""
    return record["validation"].get("stage") not in ("item", "database", "gold")


def _reason_family(record: dict) -> str:
    # "unsupported:natural_join" -> itself; "internal_error: KeyError: ..." -> "internal_error"
    detail = str(record["validation"].get("detail") or "")
    return detail.split(":", 1)[0] if detail.startswith(("internal_error", "parse_error")) else detail.split(" ", 1)[0]


def moved_witnesses(records: Sequence[dict], staging: Path, out: Path) -> None:
    """Point each record's saved witness at where it will be once ``staging`` becomes ``out``."""
    for record in records:
        variant = (record.get("validation") or {}).get("variant") or {}
        if variant.get("witness"):
            variant["witness"] = str(out / Path(variant["witness"]).relative_to(staging))


def summarize(records: Sequence[dict], seconds: float, workers: int) -> dict[str, Any]:
    classes = Counter(label_of(r) for r in records)
    subclasses = Counter(r["validation"].get("subclass") for r in records if label_of(r) == MISMATCH)
    variant_subclasses = Counter(r["validation"].get("subclass") for r in records if label_of(r) == VARIANT_MISMATCH)
    executed = [r for r in records if gold_executed(r)]
    golden = [r for r in records if label_of(r) == MATCH]
    checked = [r for r in golden if r.get("googlesql")]
    analyzed = [r for r in checked if r["googlesql"]["analyzed"]]
    ran = [r for r in checked if r["googlesql"]["executed"]]
    agreed = [r for r in ran if r["googlesql"]["match"]]
    decompile_reasons = Counter(_reason_family(r) for r in records if label_of(r) == "DECOMPILE_FAIL")
    return {
        "items": len(records),
        "classes": {name: classes.get(name, 0) for name in CLASSES if classes.get(name)},
        "mismatch_subclasses": dict(subclasses.most_common()),
        "variant_only_quarantined": classes.get(VARIANT_MISMATCH, 0),
        "variant_mismatch_subclasses": dict(variant_subclasses.most_common()),
        "decompile_fail_reasons": dict(decompile_reasons.most_common()),
        "gold_executed": len(executed),
        "golden_pairs": len(golden),
        "match_rate": round(len(golden) / len(executed), 6) if executed else None,
        "tie_aware_matches": sum(bool(r["validation"].get("tie_aware")) for r in golden),
        "googlesql_checked": len(checked),
        "googlesql_ok_rate": round(len(analyzed) / len(golden), 6) if golden and checked else None,
        "googlesql_executed": len(ran),
        "googlesql_execution_match_rate": round(len(agreed) / len(ran), 6) if ran else None,
        "difficulty": dict(Counter(r.get("difficulty") or "unknown" for r in records).most_common()),
        "seconds": round(seconds, 2),
        "items_per_second": round(len(records) / seconds, 2) if seconds > 0 else None,
        "workers": workers,
        "stage_seconds": stage_seconds(records),
    }


def golden_pair(record: dict) -> dict:
    """The record as training data reads it. Timings are left out (their totals are in the
    summary) so that the same inputs give the same file, byte for byte, and the same hash."""
    keys = ("question_id", "db_id", "difficulty", "question", "evidence", "gold_sql", "pipe_sql",
            "round_tripped_sql", "validation", "googlesql")
    pair = {key: record.get(key) for key in keys}
    pair["validation"] = {k: v for k, v in (record.get("validation") or {}).items() if k != "seconds"}
    return pair


def stage_seconds(records: Sequence[dict]) -> dict[str, float]:
    """Seconds spent in each step of the check, summed over items (the per-item figures stay in
    quarantine.jsonl)."""
    totals: dict[str, float] = {}
    for record in records:
        for step, seconds in ((record.get("validation") or {}).get("seconds") or {}).items():
            totals[step] = totals.get(step, 0.0) + seconds
    return {step: round(total, 2) for step, total in sorted(totals.items())}


def write_chart(path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, counts = [], []
    for name, count in summary["classes"].items():
        labels.append(name)
        counts.append(count)
    for name, count in summary["mismatch_subclasses"].items():
        labels.append(f"  MISMATCH/{name}")
        counts.append(count)
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.4))
    colors = ["#2e7d32" if label == MATCH else "#9e9e9e" if label in INPUT_PROBLEMS
              else "#ef9a9a" if label.startswith(" ") else "#c62828" for label in labels]
    bars = axis.barh(labels[::-1], counts[::-1], color=colors[::-1])
    axis.bar_label(bars, padding=3)
    axis.set_xscale("log" if counts and max(counts) > 50 * max(1, min(counts)) else "linear")
    axis.set_xlabel("items")
    rate = summary["match_rate"]
    axis.set_title(f"pipesql validate: {summary['items']} items, match rate "
                   f"{rate:.2%}" if rate is not None else f"pipesql validate: {summary['items']} items")
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)
    plt.close(figure)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _code(text: str | None) -> str:
    return "```sql\n" + (text or "").strip() + "\n```"


def render_report(summary: dict, records: Sequence[dict], title: str) -> str:
    lines = [f"# Validation: {title}", ""]
    lines += [
        f"- items: {summary['items']} (gold SQL executed: {summary['gold_executed']})",
        f"- **match rate: {_percent(summary['match_rate'])}** ({summary['golden_pairs']} golden pairs / "
        f"{summary['gold_executed']} items whose gold SQL executes)",
        f"- GoogleSQL (ZetaSQL) accepts {_percent(summary['googlesql_ok_rate'])} of the golden pairs; executed "
        f"on {summary['googlesql_executed']} of them (small databases), agreeing with the gold result on "
        f"{_percent(summary['googlesql_execution_match_rate'])}",
        f"- {summary['seconds']} s, {summary['items_per_second']} items/s on {summary['workers']} worker(s)",
        f"- **{summary['variant_only_quarantined']} pairs matched on their database but disagreed on a generated "
        f"variant of it** ({summary.get('variants', 'K')} variants per pair; class {VARIANT_MISMATCH}, each "
        f"with its witness database in `{WITNESSES}/`)",
        "",
        "Results are compared as execution evaluation does: rows as a multiset (order counts only when "
        "the gold query has a top-level ORDER BY), numbers by value within 1e-6, column names ignored. "
        "The comparison is **tie-aware**: rows that tie on the gold's ORDER BY key may come in any order, "
        "and where LIMIT cuts through tied rows any choice of them is accepted (found by re-running the "
        f"gold without its LIMIT). {summary['tie_aware_matches']} golden pairs matched only that way.",
        "",
        "## Classes", "", "| class | items |", "|---|---:|",
    ]
    lines += [f"| {name} | {count} |" for name, count in summary["classes"].items()]
    if summary["mismatch_subclasses"]:
        lines += ["", "| mismatch subclass | items |", "|---|---:|"]
        lines += [f"| {name} | {count} |" for name, count in summary["mismatch_subclasses"].items()]
    if summary["decompile_fail_reasons"]:
        lines += ["", "| decompile failure reason | items |", "|---|---:|"]
        lines += [f"| {name} | {count} |" for name, count in summary["decompile_fail_reasons"].items()]
    lines += ["", f"![classes]({CHART})", ""]
    failures = [name for name in summary["classes"] if name != MATCH]
    if failures:
        lines += ["## Examples", ""]
    for name in failures:
        lines += [f"### {name}", ""]
        for record in _examples([r for r in records if label_of(r) == name]):
            validation = record["validation"]
            lines += [f"**{record['question_id']}** ({record['db_id']}), stage `{validation.get('stage')}`"
                      + (f", {validation['subclass']}" if validation.get("subclass") else "")
                      + f": {str(validation.get('detail') or '').splitlines()[0][:300] if validation.get('detail') else ''}",
                      "", _code(record["gold_sql"])]
            if (validation.get("variant") or {}).get("witness"):
                lines += ["", f"witness: `{validation['variant']['witness']}`"]
            if record.get("pipe_sql"):
                lines += ["", _code(record["pipe_sql"])]
            lines.append("")
    rejected = [r for r in records if label_of(r) == MATCH and r.get("googlesql") and not r["googlesql"]["analyzed"]]
    if rejected:
        lines += ["## Golden pairs GoogleSQL rejects", ""]
        errors = Counter(str(r["googlesql"]["error"]).split(" [at ")[0][:120] for r in rejected)
        lines += ["| error | pairs |", "|---|---:|"] + [f"| {e.replace('|', '/')} | {n} |" for e, n in errors.most_common(15)]
        lines.append("")
        for record in _examples(rejected):
            lines += [f"**{record['question_id']}** ({record['db_id']}): {record['googlesql']['error']}", "",
                      _code(record["pipe_sql"]), ""]
    disagree = [r for r in records if label_of(r) == MATCH and r.get("googlesql") and r["googlesql"]["executed"]
                and not r["googlesql"]["match"]]
    if disagree:
        lines += ["## Golden pairs whose ZetaSQL result differs from SQLite's", ""]
        for record in _examples(disagree):
            outcome = record["googlesql"]
            lines += [f"**{record['question_id']}** ({record['db_id']}): {outcome.get('mismatch')}: "
                      f"{outcome.get('detail', '')}", "", _code(record["gold_sql"]), "", _code(record["pipe_sql"]), ""]
    return "\n".join(lines) + "\n"


def _examples(records: Sequence[dict]) -> list[dict]:
    """Up to EXAMPLES_PER_CLASS records with different gold SQL (Spider repeats a query per paraphrase)."""
    seen, chosen = set(), []
    for record in records:
        if record["gold_sql"] not in seen:
            seen.add(record["gold_sql"])
            chosen.append(record)
        if len(chosen) == EXAMPLES_PER_CLASS:
            break
    return chosen


def write_outputs(out_dir: Path, records: Sequence[dict], summary: dict, title: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    golden = [golden_pair(r) for r in records if label_of(r) == MATCH]
    quarantine = [r for r in records if label_of(r) != MATCH]
    paths = [out_dir / GOLDEN_PAIRS, out_dir / QUARANTINE, out_dir / SUMMARY, out_dir / REPORT, out_dir / CHART]
    write_jsonl(paths[0], golden)
    write_jsonl(paths[1], quarantine)
    write_json(paths[2], summary)
    with atomic_open(paths[3]) as handle:
        handle.write(render_report(summary, records, title))
    write_chart(paths[4], summary)
    return paths


def read_summary(out_dir: Path) -> dict:
    return json.loads((out_dir / SUMMARY).read_text())
