"""Start-up: wall time of `vultus` commands from the shell, and what `--version` imports.

    python benchmarks/startup.py [--before OLD_SRC] [--repeats 5]
                                 [--out benchmarks/results/startup.json]

Each command runs in a fresh process, as a user types it: `vultus --version`, `vultus --help`,
`vultus search PHOTO` in a small gallery (the 57 dev photos), and `vultus add` of two new
photos (dev photos with one pixel changed, so never already held) with the default workers and
with one. `--before` names another source tree, for example the commit before a change
(`git archive BASE src | tar -x -C /tmp/before`): both trees then run the same commands,
alternately, each with its own data and model cache folders (built before timing), and the
table shows both medians and their ratio. The load average is printed: on a busy machine read
the ratio.

Bytecode: an installed package has its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE
compiles every module on every start. By default the commands run with a bytecode cache in a
temporary folder (PYTHONPYCACHEPREFIX), as installed; `--no-bytecode-cache` runs them as the
environment says.

Needs ../shared/faces/dev (or $VULTUS_TEST_FACES).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
PURPOSE = "archive research"


def dev_photos() -> Path:
    env = os.environ.get("VULTUS_TEST_FACES")
    root = (Path(env) if env else REPO_ROOT.parent / "shared" / "faces") / "dev"
    if not (root / "labels.csv").is_file():
        sys.exit(f"dev photos not found at {root}: set VULTUS_TEST_FACES")
    return root


class Variant:
    """One source tree with its own data directory, model cache and key."""

    def __init__(self, name: str, src: Path, work: Path, bytecode: Path | None) -> None:
        self.name = name
        self.src = src
        self.home = work / name
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("VULTUS_") and k != "COLUMNS"
        }
        self.env.update(
            PYTHONPATH=str(src),
            VULTUS_HOME=str(self.home / "data"),
            VULTUS_CACHE=str(self.home / "cache"),
            VULTUS_KEY_FILE=str(self.home / "master.key"),
            COLUMNS="100",
        )
        if bytecode is not None:
            self.env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.env["PYTHONPYCACHEPREFIX"] = str(bytecode / name)

    def run(self, *args: str, python_flags: tuple[str, ...] = ()) -> tuple[float, str]:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, *python_flags, "-m", "vultus", *args],
            env=self.env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: vultus {' '.join(args)} failed:\n{done.stderr}")
        return seconds, done.stderr

    def setup(self, gallery: Path) -> None:
        self.run(
            "sources",
            "add",
            "bench",
            "--basis",
            "legitimate_interests",
            "--condition",
            "archiving_research",
            "--purpose",
            "start-up benchmark",
            "--retention-days",
            "1",
        )
        self.run("add", str(gallery), "--source", "bench")  # builds the model cache too


def new_photos(dev: Path, folder: Path, count: int, mark: int) -> Path:
    """`count` dev photos with one pixel changed: new content, so ingest cannot skip them."""
    folder.mkdir(parents=True)
    sources = sorted((dev / "images").rglob("*.jpg"))[:count]
    for i, path in enumerate(sources):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        rgb.putpixel((0, 0), (mark % 256, (mark // 256) % 256, i))
        rgb.save(folder / f"new_{mark}_{i}.png")
    return folder


def import_profile(variant: Variant) -> dict[str, Any]:
    """Modules imported by `vultus --version`, and their summed import time."""
    _, stderr = variant.run("--version", python_flags=("-X", "importtime"))
    rows = re.findall(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", stderr)
    names = [name for _, _, name in rows]
    return {
        "modules": len(rows),
        "self_ms": round(sum(int(own) for own, _, _ in rows) / 1000, 1),
        "heavy_loaded": sorted(
            {n for n in names if n.split(".")[0] in ("onnx", "alembic", "sqlalchemy", "numpy")}
            | {n for n in names if n.startswith("vultus.engine.")}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another source tree (its src/) to compare")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-bytecode-cache", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "startup.json"
    )
    args = parser.parse_args(argv)

    dev = dev_photos()
    query = sorted((dev / "images").rglob("*.jpg"))[0]
    work = Path(tempfile.mkdtemp(prefix="vultus-startup-"))
    try:
        bytecode = None if args.no_bytecode_cache else work / "pycache"
        variants = [Variant("after", REPO_ROOT / "src", work, bytecode)]
        if args.before is not None:
            variants.insert(0, Variant("before", args.before.resolve(), work, bytecode))
        for v in variants:
            print(f"setting up {v.name}: a gallery of the dev photos, models built once")
            v.setup(dev / "images")

        commands: dict[str, Any] = {
            "vultus --version": lambda r: ("--version",),
            "vultus --help": lambda r: ("--help",),
            "vultus search PHOTO": lambda r: ("search", str(query), "-p", PURPOSE, "--top", "5"),
            "vultus add (2 new photos)": lambda r: (
                "add",
                str(new_photos(dev, work / f"new-{r}-w", 2, 2 * r)),
                "--source",
                "bench",
            ),
            "vultus add (2 new, --workers 1)": lambda r: (
                "add",
                str(new_photos(dev, work / f"new-{r}-1", 2, 2 * r + 1)),
                "--source",
                "bench",
                "--workers",
                "1",
            ),
        }
        for v in variants:  # warm-up: first runs fill the page cache and the bytecode cache
            for make in commands.values():
                v.run(*make(-1 - variants.index(v)))
        load_before = os.getloadavg()
        times: dict[str, dict[str, list[float]]] = {
            c: {v.name: [] for v in variants} for c in commands
        }
        for r in range(args.repeats):
            for command, make in commands.items():
                cmd_args = make(r)
                for v in variants:
                    seconds, _ = v.run(*cmd_args)
                    times[command][v.name].append(seconds)
        load_after = os.getloadavg()
        imports = {v.name: import_profile(v) for v in variants}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    console = Console()
    table = Table(title=f"vultus from the shell, median of {args.repeats} runs (seconds)")
    table.add_column("command")
    for v in variants:
        table.add_column(v.name, justify="right")
    if len(variants) == 2:
        table.add_column("after / before", justify="right")
    results = []
    for command, per in times.items():
        medians = {name: statistics.median(values) for name, values in per.items()}
        row = [command, *(f"{medians[v.name]:.2f}" for v in variants)]
        if len(variants) == 2:
            row.append(f"{medians['after'] / medians['before']:.2f}")
        table.add_row(*row)
        results.append(
            {
                "command": command,
                "median_s": medians,
                "runs_s": per,
                "min_s": {n: min(x) for n, x in per.items()},
            }
        )
    console.print(table)
    for name, profile in imports.items():
        console.print(
            f"{name}: `vultus --version` imports {profile['modules']} modules "
            f"({profile['self_ms']:.0f} ms summed)"
        )
    console.print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after "
        + ", ".join(f"{x:.2f}" for x in load_after)
        + ("; bytecode cached" if not args.no_bytecode_cache else "; no bytecode cache")
    )
    report = {
        "benchmark": "startup",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "bytecode_cache": not args.no_bytecode_cache,
        "sources": {v.name: str(v.src) for v in variants},
        "results": results,
        "imports_of_version": imports,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
