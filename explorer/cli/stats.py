"""`presets` and `stats`: what a network costs, from its config alone."""

from __future__ import annotations

import argparse

from explorer.arch.cost import DEFAULT_BUDGET, fit_to_budget, model_cost
from explorer.arch.presets import PRESETS
from explorer.cli.common import add_arch_arguments, arch_from_args, parse_shape, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the named architectures")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(handler=run_presets)

    s = sub.add_parser("stats", help="params, MACs, FLOPs, op counts and memory of an architecture")
    add_arch_arguments(s)
    s.add_argument("--input-shape", type=parse_shape, default=(3, 32, 32), metavar="C,H,W")
    s.add_argument("--num-classes", type=int, default=10)
    s.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    s.add_argument("--fit-budget", action="store_true", help="scale all widths to the largest net within budget")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=run_stats)


def run_presets(args: argparse.Namespace) -> int:
    rows = []
    for name, cfg in PRESETS.items():
        cost = model_cost(cfg, budget=args.budget)
        rows.append({"name": name, "params": cost.params, "flops": cost.flops,
                     "within_budget": cost.within_budget, "config": cfg.to_dict()})
    if args.json:
        print_json(rows)
        return 0
    print(f"{'preset':<18}{'params':>10}{'MFLOPs':>10}  budget {args.budget:,}")
    for row in rows:
        mark = "ok" if row["within_budget"] else "OVER"
        print(f"{row['name']:<18}{row['params']:>10,}{row['flops'] / 1e6:>10.2f}  {mark}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    cfg = arch_from_args(args)
    if args.fit_budget:
        cfg = fit_to_budget(cfg, args.budget, args.input_shape, args.num_classes)
    cost = model_cost(cfg, args.input_shape, args.num_classes, args.budget)
    if args.json:
        print_json(cost.to_dict() | {"config": cfg.to_dict()})
        return 0
    print(f"{'layer':<16}{'type':<20}{'output':<16}{'params':>10}{'MACs':>14}")
    for layer in cost.layers:
        shape = "x".join(map(str, layer.out_shape))
        print(f"{layer.name:<16}{layer.kind:<20}{shape:<16}{layer.params:>10,}{layer.macs:>14,}")
    status = "within" if cost.within_budget else "OVER"
    print(f"params {cost.params:,} ({status} budget {cost.budget:,}, {cost.remaining:+,} left)")
    print(f"MACs {cost.macs:,}  FLOPs {cost.flops:,}  mult {cost.multiplications:,}  add {cost.additions:,}  "
          f"cmp {cost.comparisons:,}  elementwise {cost.elementwise:,}")
    print(f"memory: params {cost.param_bytes / 1024:.1f} KiB, activations {cost.activation_bytes / 1024:.1f} KiB/image")
    if args.fit_budget:
        print("fitted config: " + cfg.to_json().replace("\n", " "))
    return 0
