"""How long the analytic cost model takes per config (target: under 1 ms), against a forward pass with
FlopCounterMode and a torchinfo summary, side by side in one run. Prints a table and a JSON line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torchinfo
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
from explorer import PRESETS, build_model, model_cost  # noqa: E402


def per_call_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1000


def flop_counter(cfg) -> int:
    model = build_model(cfg).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops()


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # no options; --help says what it is
    torch.set_num_threads(1)
    rows = []
    for name in ("tutorial", "study-bn", "modern", "best"):
        cfg = PRESETS[name]
        rows.append({
            "preset": name,
            "cost_ms": per_call_ms(lambda cfg=cfg: model_cost(cfg), 500),
            "build+flopcounter_ms": per_call_ms(lambda cfg=cfg: flop_counter(cfg), 10),
            "torchinfo_ms": per_call_ms(
                lambda cfg=cfg: torchinfo.summary(build_model(cfg), (1, 3, 32, 32), device="cpu", verbose=0), 5),
        })
    print(f"{'preset':<12}{'model_cost ms':>15}{'build+FlopCounter ms':>22}{'torchinfo ms':>14}")
    for r in rows:
        print(f"{r['preset']:<12}{r['cost_ms']:>15.3f}{r['build+flopcounter_ms']:>22.1f}{r['torchinfo_ms']:>14.1f}")
    worst = max(r["cost_ms"] for r in rows)
    print(json.dumps({"benchmark": "cost_speed", "max_cost_ms": round(worst, 4), "target_ms": 1.0,
                      "meets_target": worst < 1.0, "rows": rows}))


if __name__ == "__main__":
    main()
