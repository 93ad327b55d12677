#!/usr/bin/env python3
"""A results page from its template: every line `<!-- report: DIRS -->` becomes the table
`qornn report` writes (results.md) for DIRS, folders of runs or run folders joined by `+`,
from the run artefacts committed there (each run's config.toml, metrics.jsonl,
summary.json), followed by each run's command from its command.txt; `<!-- figure: DIRS
NAME -->` keeps that report's NAME.svg in the template's folder, as
figures/<first folder's name>-NAME.svg, and links it; `<!-- include: FILE -->` is FILE's
text (a bench script's output kept beside the page). Everything else is copied as it is.

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


def report(folders: list[Path], out: Path) -> Path:
    """`qornn report` of the runs in `folders` into `out` (once per list)."""
    if not (out / "results.md").exists():
        subprocess.run(
            [QORNN, "report", *map(str, folders), "--out", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def runs_in(folders: list[Path]) -> list[Path]:
    """The run folders: each folder that is one, and the runs inside the others, in order."""
    runs = []
    for folder in folders:
        if (folder / "summary.json").exists():
            runs.append(folder)
        else:
            runs += sorted(p for p in folder.iterdir() if (p / "summary.json").exists())
    return runs


def commands(folders: list[Path]) -> str:
    """Each run's command: one line when they differ only by the run's folder name,
    written `<run>`; else one line per run, in the order of their folders."""
    runs = runs_in(folders)
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
            kind, spec = m.group(1), m.group(2)
            if kind == "include":
                print(Path(spec).read_text().rstrip())
                continue
            folders = [Path(p) for p in spec.split("+")]
            out = report(folders, Path(scratch) / re.sub(r"[/+]", "_", spec))
            if kind == "report":
                print((out / "results.md").read_text().rstrip())
                print()
                print(commands(folders))
            else:
                name, first = m.group(3), folders[0].name
                figures = template.parent / "figures"
                figures.mkdir(exist_ok=True)
                svg = figures / f"{first}-{name}.svg"
                svg.write_bytes((out / f"{name}.svg").read_bytes())
                print(f"![{name} of {first}]({svg.relative_to(PAGES)})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
