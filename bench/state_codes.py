#!/usr/bin/env python3
"""How an integer model's hidden codes spread over their range, block by block: from the
reference trace `qornn export --c DIR` writes (one test sequence through the integer
engine, `DIR/qornn_trace.h`), each block's root-mean-square code, the share of codes at
either end of the range (saturated) and at zero, over every step.

    bench/state_codes.py DIR/qornn_trace.h BLOCK [ACT_BITS]

BLOCK: units per block (the Block-HadamRNN's 16); ACT_BITS (default 8): the codes' width.
Prints one Markdown row per block, then the blocks' range of each column.
"""
import re
import statistics
import sys


def trace_array(text, name):
    body = re.search(name + r"\[(\d+)\]\s*=\s*\{(.*?)\}", text, re.S)
    if body is None:
        sys.exit(f"{name} not found: is this a qornn_trace.h?")
    return [int(v) for v in body.group(2).replace("\n", " ").split(",") if v.strip()]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    text = open(sys.argv[1]).read()
    block = int(sys.argv[2])
    act_bits = int(sys.argv[3]) if len(sys.argv) == 4 else 8
    steps = int(re.search(r"QORNN_TRACE_STEPS (\d+)", text).group(1))
    codes = trace_array(text, "qornn_trace_hidden")
    n = len(codes) // steps
    if n * steps != len(codes) or n % block:
        sys.exit(f"{len(codes)} codes are not {steps} steps of whole blocks of {block}")
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    rows = []
    for b in range(n // block):
        mine = [codes[t * n + i] for t in range(steps) for i in range(b * block, (b + 1) * block)]
        rms = (sum(c * c for c in mine) / len(mine)) ** 0.5
        saturated = sum(c <= lo or c >= hi for c in mine) / len(mine)
        zero = sum(c == 0 for c in mine) / len(mine)
        rows.append((rms, saturated, zero))
    print(f"| block | rms code | saturated | zero |  (A = {act_bits}, {steps} steps, {n} units)")
    print("|---|---|---|---|")
    for b, (rms, saturated, zero) in enumerate(rows):
        print(f"| {b} | {rms:.1f} | {100 * saturated:.1f} % | {100 * zero:.1f} % |")
    for k, name in enumerate(("rms code", "saturated", "zero")):
        values = [r[k] for r in rows]
        scale, unit = (1, "") if k == 0 else (100, " %")
        print(f"{name}: {scale * min(values):.1f} to {scale * max(values):.1f}{unit}, "
              f"median {scale * statistics.median(values):.1f}{unit}")


if __name__ == "__main__":
    main()
