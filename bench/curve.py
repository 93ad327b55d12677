#!/usr/bin/env python3
"""A run's validation curve as results text: `step: loss / accuracy` at the given steps
(from metrics.jsonl), and the last evaluation.

    python3 bench/curve.py runs/<run> 500 1000 2000 ...
"""
import json
import sys
from pathlib import Path


def main() -> None:
    folder, steps = Path(sys.argv[1]), {int(s) for s in sys.argv[2:]}
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    evaluations = [json.loads(line) for line in lines]
    chosen = [e for e in evaluations if e["step"] in steps]
    if evaluations and evaluations[-1] not in chosen:
        chosen.append(evaluations[-1])
    print(", ".join(
        f"{e['step']}: {e['val_loss']:.4f} / {100 * e['val_accuracy']:.1f} %" for e in chosen
    ))


if __name__ == "__main__":
    main()
