#!/usr/bin/env python3
"""Rows of docs/results/mnist.md's 10-epoch table from run folders: validation accuracy after each epoch
(metrics.jsonl, evaluations at epoch ends) and the best step's test accuracy (summary.json).

    python3 bench/epoch_rows.py 'DIR=config, flags' ...

DIR is a run folder (for a sweep point, `runs/<sweep>/0`; the row is named after the sweep
folder); the text after `=` fills the "config, flags" column.
"""
import json
import sys
from pathlib import Path


def row(folder: Path, label: str) -> str:
    summary = json.loads((folder / "summary.json").read_text())
    evaluations = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    accuracies = [e["val_accuracy"] for e in evaluations if e.get("val_accuracy") is not None]
    name = folder.parent.name if folder.name.isdigit() else folder.name
    bits = "fp32" if summary["bits"] == 32 else str(summary["bits"])
    curve = ", ".join(f"{100 * a:.1f}" for a in accuracies)
    test = 100 * summary["test"]["accuracy"]
    return (
        f"| `{name}` | {label} | {bits} | {summary['size_bytes']} | {curve} | "
        f"{test:.1f} % | {summary['seconds']:.0f} s |"
    )


def main() -> None:
    for arg in sys.argv[1:]:
        folder, _, label = arg.partition("=")
        print(row(Path(folder), label))


if __name__ == "__main__":
    main()
