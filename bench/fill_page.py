#!/usr/bin/env python3
"""A results page from its template: every line `<!-- report: DIR -->` becomes the table
`qornn report DIR` writes (results.md), from the run artefacts committed in DIR (each run's
config.toml, metrics.jsonl, summary.json), followed by each run's command from its
command.txt; `<!-- figure: DIR NAME -->` keeps that report's NAME.svg beside DIR's runs, in
DIR/figures/, and links it; `<!-- include: FILE -->` is FILE's text (a bench script's
output kept beside the page). Everything else is copied as it is.

    python3 bench/fill_page.py docs/results/copy-t100/page.md > docs/results/copy-t100.md

QORNN names the binary (default target/release/qornn). Paths are relative to the
repository root; links in the page are written relative to the page's folder
(docs/results/)."""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

QORNN = os.environ.get("QORNN", "target/release/qornn")
DIRECTIVE = re.compile(r"^<!-- (report|figure|include): (\S+)(?: (\S+))? -->$")
PAGES = Path("docs/results")


def report(folder: Path, out: Path) -> Path:
    """`qornn report` of the runs in `folder` into `out` (once per folder)."""
    if not (out / "results.md").exists():
        subprocess.run(
            [QORNN, "report", str(folder), "--out", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def commands(folder: Path) -> str:
    """Each run's command: one line when they differ only by the run's folder name,
    written `<run>`; else one line per run, in the order of their folders."""
    runs = sorted(p for p in folder.iterdir() if (p / "summary.json").exists())
    each = {run.name: (run / "command.txt").read_text().strip() for run in runs}
    shapes = {command.replace(name, "<run>") for name, command in each.items()}
    if len(shapes) == 1 and len(runs) > 1:
        names = ", ".join(f"`{name}`" for name in each)
        return f"Each run `<run>` of {names}: `{shapes.pop()}`"
    return "\n".join(f"- `{name}`: `{command}`" for name, command in each.items())


def main(template: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for line in template.read_text().splitlines():
            m = DIRECTIVE.match(line)
            if not m:
                print(line)
                continue
            kind, folder = m.group(1), Path(m.group(2))
            if kind == "include":
                print(folder.read_text().rstrip())
                continue
            out = report(folder, Path(scratch) / str(folder).replace("/", "_"))
            if kind == "report":
                print((out / "results.md").read_text().rstrip())
                print()
                print(commands(folder))
            else:
                name = m.group(3)
                figures = folder / "figures"
                figures.mkdir(exist_ok=True)
                (figures / f"{name}.svg").write_bytes((out / f"{name}.svg").read_bytes())
                link = (figures / f"{name}.svg").relative_to(PAGES)
                print(f"![{name} of {folder.name}]({link})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
