#!/usr/bin/env python3
"""Markdown rows from run folders (their config.toml and summary.json), so that results tables
come from the runs: `python3 bench/runs_table.py runs/copy-t100-* [--command-suffix ...]`.

Columns: run folder, model, weight bits, range rule, test loss, test accuracy, size in bytes,
steps, best step, wall time. A folder without summary.json (a run still going) is skipped.
"""
import json
import sys
import tomllib
from pathlib import Path


def row(folder: Path) -> str | None:
    summary_path = folder / "summary.json"
    if not summary_path.exists():
        return None
    s = json.loads(summary_path.read_text())
    c = tomllib.loads((folder / "config.toml").read_text())
    bits = "fp32" if s["bits"] == 32 else str(s["bits"])
    acc = s["test"]["accuracy"]
    acc = "" if acc is None else f"{100 * acc:.1f} %"
    return (
        f"| `{folder.name}` | {s['model']} | {bits} | {c.get('range', 'max')} | "
        f"{s['test']['loss']:.4f} | {acc} | {s['size_bytes']} | {s['steps']} | "
        f"{s['best_step']} | {s['seconds']:.0f} s |"
    )


def main() -> None:
    print("| run | model | bits | range | test loss | test acc. | size (bytes) | steps | best step | wall time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        r = row(Path(arg))
        if r:
            print(r)


if __name__ == "__main__":
    main()
