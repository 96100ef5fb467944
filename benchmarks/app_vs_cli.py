"""Images/s of the same run started from a shell (`python -m explorer train`) and as the app starts it
(explorer.store.runner.Runner: the same command in a child process of its own), one after the other, alternating.

    python benchmarks/app_vs_cli.py --data folder:/tmp/cifar10-jpeg --epochs 1 --repeats 1

Both read the training throughput the run recorded (training images / training seconds, evaluation excluded).
Prints a table and a JSON line. The decode cache is warmed first so neither pays for JPEG decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing
from explorer.arch.presets import PRESETS  # noqa: E402
from explorer.engine.recipes import RECIPES  # noqa: E402
from explorer.store.runner import Runner, RunSpec  # noqa: E402
from explorer.store.runs import read_run  # noqa: E402


def cli_run(runs_dir: Path, args: argparse.Namespace) -> dict:
    """A run from a shell: the CLI in its own process, as a user types it in a terminal. A terminal is a session
    of its own, as the app's run processes are: with the kernel's autogroup scheduling a session is the unit of
    CPU fairness, so running the CLI inside this script's session would compare unlike shares on a busy machine."""
    out = subprocess.run([sys.executable, "-m", "explorer", "train", "--preset", args.preset, "--data", args.data,
                          "--recipe", args.recipe, "--epochs", str(args.epochs), "--runs-dir", str(runs_dir),
                          "--json"], cwd=ROOT, capture_output=True, text=True, check=True, start_new_session=True)
    return read_run(json.loads(out.stdout.splitlines()[-1])["run_id"], runs_dir)


def app_run(runs_dir: Path, args: argparse.Namespace) -> dict:
    """A run as the app starts it: Runner.start (a child process in a new session), then poll its record."""
    runner = Runner(runs_dir)
    spec = RunSpec(PRESETS[args.preset], RECIPES[args.recipe].replace(epochs=args.epochs), args.data,
                   preset=args.preset, recipe=args.recipe)
    return runner.wait(runner.start(spec))


def together(runs_dir: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """Both at the same moment on one runs folder: the same external load for both, and the slot-based thread
    budget gives each half of the cores. The fairest comparison on a machine others are using."""
    cli = subprocess.Popen([sys.executable, "-m", "explorer", "train", "--preset", args.preset, "--data", args.data,
                            "--recipe", args.recipe, "--epochs", str(args.epochs), "--runs-dir", str(runs_dir),
                            "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           start_new_session=True)
    app = app_run(runs_dir, args)
    out, _ = cli.communicate()
    return read_run(json.loads(out.splitlines()[-1])["run_id"], runs_dir), app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="folder:/tmp/cifar10-jpeg")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--together", action="store_true", help="run each pair at the same time (see together())")
    args = parser.parse_args()
    from explorer.engine.data import load_dataset

    load_dataset(args.data)  # writes the decode cache once: neither run below decodes JPEGs
    results: dict[str, list[float]] = {"cli": [], "app": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats if args.together else 0):
            records = dict(zip(("cli", "app"), together(Path(tmp), args)))
            for name, record in records.items():
                results[name].append(record["summary"]["images_per_second"])
                print(f"{name:>4}: {results[name][-1]:8,.0f} img/s  (together; {record['status']}, threads "
                      f"{record.get('threads')}, load {os.getloadavg()[0]:.2f})", flush=True)
        for repeat in range(0 if args.together else args.repeats):
            order = (("cli", cli_run), ("app", app_run))
            for name, start in order if repeat % 2 == 0 else order[::-1]:  # alternate: load drifts over time
                t0 = time.perf_counter()
                record = start(Path(tmp), args)
                ips = record["summary"]["images_per_second"]
                results[name].append(ips)
                print(f"{name:>4}: {ips:8,.0f} img/s  ({record['status']}, {time.perf_counter() - t0:.1f} s wall, "
                      f"threads {record.get('threads')}, load {os.getloadavg()[0]:.2f})", flush=True)
    cli, app = statistics.median(results["cli"]), statistics.median(results["app"])
    print(f"median: cli {cli:,.0f} img/s, app {app:,.0f} img/s, app/cli {app / cli:.1%}")
    print(json.dumps({"cli_images_per_second": results["cli"], "app_images_per_second": results["app"],
                      "app_over_cli": app / cli, "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
