"""`make bench`: the performance benchmarks and the quality suite, written to docs/benchmarks.md.

    python benchmarks/run_all.py [--out docs/benchmarks.md] [--skip decode,demo_factors,quality]

Each benchmark runs as its own process (so one failing is reported, not fatal); the page records
the machine, the versions and the date.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = (
    ("decode", "Traversal decode speed", [sys.executable, "benchmarks/decode.py"]),
    ("demo_factors", "Factor identification on the demo model",
     [sys.executable, "benchmarks/demo_factors.py"]),
    ("diff_permutation", "lexflow diff: recovering a permutation of the demo VAE's latents",
     [sys.executable, "benchmarks/diff_permutation.py"]),
    ("quality", "Quality suite on the synthetic families (measure explainer)",
     [sys.executable, "benchmarks/quality.py"]),
)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = [f"Python {platform.python_version()}"]
    for pkg in ("lexflow", "torch", "numpy", "scikit-learn", "mlflow", "nltk", "transformers"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the start"
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs, no GPU used{load}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--skip", default="", help="comma-separated names to skip")
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    env = {**os.environ, "LEXFLOW_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT)}
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench` (benchmarks/run_all.py); do not edit by hand.",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        "- What the quality columns mean: docs/quality.md.",
    ]
    sections = []
    failed = 0
    for name, title, cmd in BENCHMARKS:
        if name in skip:
            continue
        print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        took = time.perf_counter() - start
        body = proc.stdout.strip()
        print(body, flush=True)
        if proc.returncode != 0:
            failed += 1
            body += f"\n\nFAILED (exit {proc.returncode}):\n" + proc.stderr.strip()[-3000:]
        fence = name != "quality"  # the quality suite prints a markdown table
        sections += ["", f"## {title}", "", f"`{' '.join(['python', *cmd[1:]])}` ({took:.0f} s)", ""]
        sections += ["```", body, "```"] if fence else [body]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(header + sections) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
