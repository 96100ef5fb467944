"""Groups of runs: one design trained with several seeds, summarized and compared (store.stats does the maths).

`train --repeat N` (or the Train page's "Repeat with N seeds") gives N runs the seeds seed, seed + 1, ... and one
group id, stored in each run record (`group`). A group's sample is the final test accuracy of its finished runs:
stopped, failed and active runs are listed but not counted (a stopped run trained fewer epochs). `compare` takes
a run id (a sample of one) or a group id on each side and refuses what cannot be compared with one line saying
what to change.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from explorer.engine.data import canonical_source
from explorer.errors import ConfigError
from explorer.store import stats
from explorer.store.runner import RunSpec, new_run_id
from explorer.store.runs import RunError, list_runs
from explorer.store.settings import default_runs_dir

GROUP_PREFIX = "g-"  # group ids never look like run ids (which start with the date)
MAX_REPEAT = 50  # more seeds than this is a sweep's job, not a repeat's
ACCURACY = "final_test_accuracy"  # the last epoch's accuracy: the best epoch would be picked on the test set


def new_group_id() -> str:
    """A group id, sortable by time like run ids: g-20240101-120000-123-a1b2c3."""
    return GROUP_PREFIX + new_run_id()


def repeat_specs(spec: RunSpec, repeat: int, group: str | None = None) -> list[RunSpec]:
    """`spec` with the seeds seed, seed + 1, ... seed + repeat - 1, all in one (new) group."""
    if not 1 <= repeat <= MAX_REPEAT:
        raise ConfigError(f"repeat {repeat} is out of range: give 1 to {MAX_REPEAT} seeds (a sweep runs more).")
    if repeat == 1 and group is None:
        return [spec]
    group = group or new_group_id()
    return [dataclasses.replace(spec, train=spec.train.replace(seed=spec.train.seed + i), group=group)
            for i in range(repeat)]


@dataclass(frozen=True)
class Sample:
    """What one side of a comparison (or one group) holds: the runs, which of them count, their accuracies."""

    id: str
    kind: str  # "run" or "group"
    name: str
    data: tuple[str, ...]  # the data sources of its runs (one, unless runs were added from elsewhere)
    run_ids: tuple[str, ...]  # every run, newest first
    counted: tuple[str, ...]  # the finished runs whose accuracy is in `accuracies`
    accuracies: tuple[float, ...]
    images_per_second: float | None  # mean over the counted runs
    params: float | None
    flops: float | None
    group: str | None = None  # a run's group id (kind "run" only)

    @property
    def summary(self) -> stats.Summary | None:
        """n, mean, std and the 95 % interval of the accuracies; None while no run has finished."""
        return stats.summarize(self.accuracies, self.id) if self.accuracies else None

    def to_dict(self) -> dict:
        summary = self.summary
        return {"id": self.id, "kind": self.kind, "name": self.name, "data": ", ".join(self.data),
                "runs": len(self.run_ids), "n": len(self.counted),
                **{key: None for key in ("mean", "std", "low", "high")},
                **({k: v for k, v in summary.to_dict().items() if k != "n"} if summary else {}),
                "images_per_second": self.images_per_second, "params": self.params, "flops": self.flops,
                "run_ids": list(self.run_ids), "counted": list(self.counted)}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _sample(sample_id: str, kind: str, records: list[dict]) -> Sample:
    """`records` newest first; the sample's name (the newest one given), params and FLOPs are the newest run's."""
    counted = [r for r in records if r.get("status") == "finished"
               and isinstance((r.get("summary") or {}).get(ACCURACY), (int, float))]
    speeds = [r["summary"]["images_per_second"] for r in counted
              if isinstance(r["summary"].get("images_per_second"), (int, float))]
    newest = records[0]
    name = next((r.get("name") or r.get("preset") for r in records if r.get("name") or r.get("preset")), sample_id)
    return Sample(id=sample_id, kind=kind, name=str(name),
                  data=tuple(dict.fromkeys(str(canonical_source(r.get("data"))) for r in records)),
                  run_ids=tuple(r["id"] for r in records), counted=tuple(r["id"] for r in counted),
                  accuracies=tuple(float(r["summary"][ACCURACY]) for r in counted),
                  images_per_second=_mean(speeds), params=newest.get("params"), flops=newest.get("flops"),
                  group=newest.get("group") if kind == "run" else None)


def _by_group(records: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for record in records:
        if isinstance(record.get("group"), str):
            groups.setdefault(record["group"], []).append(record)
    return groups


def group_summaries(runs_dir: str | os.PathLike | None = None, records: list[dict] | None = None) -> list[Sample]:
    """Every group in the runs folder (or in `records`, as list_runs gives them), newest first."""
    records = list_runs(runs_dir, check_events=False) if records is None else records
    return [_sample(group_id, "group", members) for group_id, members in _by_group(records).items()]


def resolve(target: str, runs_dir: str | os.PathLike | None = None, records: list[dict] | None = None) -> Sample:
    """The sample a run id or a group id names; RunError naming where to look when it names neither."""
    records = list_runs(runs_dir, check_events=False) if records is None else records
    run = next((r for r in records if r["id"] == target), None)
    if run is not None:
        return _sample(target, "run", [run])
    members = _by_group(records).get(target)
    if members:
        return _sample(target, "group", members)
    raise RunError(f"{target!r} is neither a run id nor a group id in {runs_dir or default_runs_dir()}; "
                   "`python -m explorer runs --groups` lists the groups, `python -m explorer runs` the runs.")


def _check_comparable(side: str, sample: Sample) -> None:
    if len(sample.data) > 1:
        raise ConfigError(f"{side} ({sample.id}) mixes runs on {' and '.join(sample.data)}: compare runs of one "
                          "dataset.")
    if len(sample.counted) >= 2:
        return
    what = f"run {sample.id}" if sample.kind == "run" else f"group {sample.id}"
    if sample.kind == "run" and sample.group:
        fix = f"give its group id {sample.group} instead"
    elif sample.kind == "run":
        fix = "train the design with --repeat 3 (or Repeat with 3 seeds) and give the group id"
    else:
        fix = "train more seeds into it with `python -m explorer train ... --group " + sample.id + "`"
    raise ConfigError(f"{side}: {what} has {len(sample.counted)} finished run(s); a comparison needs at least 2 "
                      f"on each side: {fix}.")


def compare(a: str, b: str, runs_dir: str | os.PathLike | None = None,
            records: list[dict] | None = None) -> tuple[Sample, Sample, stats.Comparison]:
    """A against B (run or group ids): the two samples and stats.compare of their final test accuracies."""
    records = list_runs(runs_dir, check_events=False) if records is None else records
    first, second = resolve(a, runs_dir, records), resolve(b, runs_dir, records)
    for side, sample in (("A", first), ("B", second)):
        _check_comparable(side, sample)
    if first.data != second.data:
        raise ConfigError(f"A ({first.id}) trained on {first.data[0]} and B ({second.id}) on {second.data[0]}: "
                          "accuracies on different datasets do not compare; pick runs or groups of one dataset.")
    return first, second, stats.compare(first.accuracies, second.accuracies)
