#!/usr/bin/env python3
"""docs/results/copy-t100.md's low-bit copy table (T0 = 100) from the run folders: `python3
bench/copy_low_bit_table.py [RUNS]` (default `runs`) prints it in Markdown. Each row names its
run folder and the command that made it (`qornn train --config configs/... --threads 1
--out runs/<folder>`); a folder without summary.json prints "(not run)". Two rows come from
an earlier table (the literature's full-precision and 4-bit runs, whose
folders are not here) and say so.
"""
import json
import sys
from pathlib import Path

R = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
rows = [
 # (method, setting, run folder, command suffix)
 ("full precision", "ReLU, RMSprop, Henaff (literature)", "FP_LIT", "copy-t100-ornn-bjorck-fp"),
 ("full precision", "**modReLU**, Adam 1e-3, orthogonal init", "copy-t100-ornn-bjorck-fp-modrelu-adam", "copy-t100-ornn-bjorck-fp-modrelu-adam"),
 ("paper's quantizer", "ReLU, RMSprop, Henaff (literature)", "copy-t100-qornn-bjorck-4b-bits2", "copy-t100-qornn-bjorck-4b --bits 2"),
 ("paper's quantizer", "ReLU, RMSprop, Henaff (literature)", "copy-t100-qornn-bjorck-4b-bits3", "copy-t100-qornn-bjorck-4b --bits 3"),
 ("paper's quantizer", "ReLU, RMSprop, Henaff (literature)", None, "copy-t100-qornn-bjorck-4b"),
 ("paper's quantizer", "ReLU, RMSprop, Henaff (literature)", "copy-t100-qornn-bjorck-8b", "copy-t100-qornn-bjorck-8b"),
 ("paper's quantizer, 8 -> 6 -> 4 bits (4000 steps)", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-8-6-4b", "copy-t100-qornn-bjorck-8-6-4b"),
 ("LSQ, step_lr = lr", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-lsq-steplr1e-3-bits2", "copy-t100-qornn-bjorck-4b-lsq --bits 2 --step-lr 1e-3"),
 ("LSQ, step_lr = lr", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-lsq-steplr1e-3-bits3", "copy-t100-qornn-bjorck-4b-lsq --bits 3 --step-lr 1e-3"),
 ("LSQ, step_lr = lr", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-lsq-steplr1e-3", "copy-t100-qornn-bjorck-4b-lsq --step-lr 1e-3"),
 ("LSQ, step_lr = lr", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-lsq-steplr1e-3-bits8", "copy-t100-qornn-bjorck-4b-lsq --bits 8 --step-lr 1e-3"),
 ("LSQ, step_lr 1e-5", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-lsq-bits2", "copy-t100-qornn-bjorck-4b-lsq --bits 2"),
 ("LSQ, step_lr 1e-5", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-lsq", "copy-t100-qornn-bjorck-4b-lsq"),
 ("LSQ, step_lr 1e-5", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-lsq-bits8", "copy-t100-qornn-bjorck-4b-lsq --bits 8"),
 ("LSQ, step_lr 1e-5, from the 8-bit run", "ReLU, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-lsq-from-8b", "copy-t100-qornn-bjorck-4b-lsq --init-from runs/copy-t100-qornn-bjorck-8b"),
 ("paper's quantizer", "ReLU, Adam 1e-3, orthogonal init", "copy-t100-qornn-bjorck-4b-relu-adam", "copy-t100-qornn-bjorck-4b-relu-adam"),
 ("paper's quantizer", "**modReLU**, RMSprop, Henaff", "copy-t100-qornn-bjorck-4b-modrelu-literature", "copy-t100-qornn-bjorck-4b-modrelu-literature"),
 ("paper's quantizer", "**modReLU**, Adam 1e-3, orthogonal init", "copy-t100-qornn-bjorck-4b-modrelu-adam-bits2", "copy-t100-qornn-bjorck-4b-modrelu-adam --bits 2"),
 ("paper's quantizer", "**modReLU**, Adam 1e-3, orthogonal init", "copy-t100-qornn-bjorck-4b-modrelu-adam-bits3", "copy-t100-qornn-bjorck-4b-modrelu-adam --bits 3"),
 ("paper's quantizer", "**modReLU**, Adam 1e-3, orthogonal init", "copy-t100-qornn-bjorck-4b-modrelu-adam", "copy-t100-qornn-bjorck-4b-modrelu-adam"),
 ("orthogonality-aware rounding", "**modReLU**, Adam 1e-3, orthogonal init", "copy-t100-qornn-bjorck-4b-orthogonal-rounding", "copy-t100-qornn-bjorck-4b-orthogonal-rounding"),
 ("HadamRNN (W binary)", "modReLU, Adam 1e-3", "copy-t100-hadamrnn-2b", "copy-t100-hadamrnn-2b"),
 ("HadamRNN (W binary)", "modReLU, Adam 1e-3", "copy-t100-hadamrnn-4b-bits3", "copy-t100-hadamrnn-4b --bits 3"),
 ("HadamRNN (W binary)", "modReLU, Adam 1e-3", "copy-t100-hadamrnn-4b", "copy-t100-hadamrnn-4b"),
 ("HadamRNN (W binary)", "modReLU, Adam 1e-3", "copy-t100-hadamrnn-4b-bits8", "copy-t100-hadamrnn-4b --bits 8"),
 ("Block-HadamRNN (W ternary, m = 16)", "modReLU, Adam 1e-3", "copy-t100-block-hadamrnn-4b", "copy-t100-block-hadamrnn-4b"),
 ("block rotations (W's blocks as codes, one step per block)", "modReLU, Adam 1e-3", "copy-t100-qornn-rotations-4b-bits2", "copy-t100-qornn-rotations-4b --bits 2"),
 ("block rotations (W's blocks as codes, one step per block)", "modReLU, Adam 1e-3", "copy-t100-qornn-rotations-4b", "copy-t100-qornn-rotations-4b"),
]
out = ["| method | setting | command: `qornn train --config configs/...` | bits (U; W for QORNN) | test loss | recall | size (bytes) | wall time |", "|---|---|---|---|---|---|---|---|"]
for method, setting, run, cmd in rows:
    parts = cmd.split(' ', 1)
    command = f"`{parts[0]}.toml{(' ' + parts[1]) if len(parts) > 1 else ''}`"
    if run == "FP_LIT":
        out.append(f"| {method} | {setting} | {command} | fp32 | 0.0094 | 97.6 % | 75812 | 135 s (an earlier run, table below) |")
        continue
    if run is None:
        out.append(f"| {method} | {setting} | {command} | 4 | 0.1664 | 23.8 % | 13996 | 97 s (an earlier run, table below) |")
        continue
    p = R / run / 'summary.json'
    if not p.exists():
        out.append(f"| {method} | {setting} | {command} | | (not run) | | | |")
        continue
    s = json.loads(p.read_text())
    bits = 'fp32' if s['bits'] == 32 else s['bits']
    out.append(f"| {method} | {setting} | {command} | {bits} | {s['test']['loss']:.4f} | {100*s['test']['accuracy']:.1f} % | {s['size_bytes']} | {s['seconds']:.0f} s |")
print('\n'.join(out))
