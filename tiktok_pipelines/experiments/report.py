"""Run Monolith's experiments (a), (b) and (d) on a data directory: results, tables and plots.

One function behind both the CLI (``tiktok-pipelines experiment``) and the Dagster asset
``monolith_experiments``, so the figures in the terminal and in the UI are the same run's.
(c), freshness, needs the sensors and a running server: ``benchmarks/freshness.py --out-dir``
writes its JSON and plot into the same folder (``make experiments`` runs both).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path


from tiktok_pipelines.experiments.closed_loop import closed_loop
from tiktok_pipelines.experiments.monolith import ExperimentConfig, compare, markdown, split_days
from tiktok_pipelines.experiments.plots import plot_closed_loop, plot_collisionless_vs_hashing, plot_sync_intervals
from tiktok_pipelines.lake import atomic_write_json
from tiktok_pipelines.layout import DataLayout
from tiktok_pipelines.training.joiner import JoinerConfig, build_examples, has_examples, read_examples

KUAIREC = Path(__file__).resolve().parents[3] / "shared" / "data" / "kuairec"


@dataclass
class ExperimentReport:
    result: dict
    tables: list[str] = field(default_factory=list)  # markdown
    plots: list[Path] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        return "\n\n".join(self.tables)


def run_experiments(data_dir: str | Path, *, train_days: int = 5, negative_rate: float = 0.5, dim: int = 16,
                    closed_loop_days: int = 4, kuairec_dir: str | Path | None = KUAIREC,
                    seeds: int = 3) -> ExperimentReport:
    data = Path(data_dir)
    lake = DataLayout(data).lake
    config = JoinerConfig(negative_rate=negative_rate)
    build_examples(lake, config)  # no-op when the examples are current
    if not has_examples(lake):
        raise FileNotFoundError(f"no examples in {lake}: simulate and ingest first (make quickstart)")
    examples = read_examples(lake, order_by=None)  # the examples table's committed snapshot
    train, evaluation, days = split_days(examples, train_days)
    cfg = ExperimentConfig(negative_rate=negative_rate, label_window_s=config.label_window_s, dim=dim,
                           seeds=tuple(range(seeds)))
    result = compare(train, evaluation, cfg)
    report = ExperimentReport({
        "dataset": "simulator", "train_days": days[:train_days], "eval_days": days[train_days:],
        **{k: v for k, v in result.items() if k != "per_seed"},
    })
    report.tables.append(
        f"train days {days[0]}..{days[train_days - 1]}, evaluated on {days[train_days]}..{days[-1]} "
        f"({result['eval_examples']:,} examples, weighted to the full distribution)\n\n" + markdown(result))
    out_dir = data / "experiments"
    report.plots += [plot_sync_intervals(report.result, out_dir / "a_sync_intervals.png"),
                     plot_collisionless_vs_hashing(report.result, out_dir / "b_collisionless_vs_hashing.png")]
    if closed_loop_days > 0:
        kuairec = Path(kuairec_dir) if kuairec_dir and (Path(kuairec_dir) / "video_captions.csv").exists() else None
        d = closed_loop(out_dir / "closed_loop", loop_days=closed_loop_days, dim=dim,
                        negative_rate=negative_rate, kuairec_dir=kuairec)
        shutil.rmtree(out_dir / "closed_loop", ignore_errors=True)  # scratch worlds; the JSON keeps the figures
        atomic_write_json(out_dir / "closed_loop.json", d)
        report.plots.append(plot_closed_loop(d, out_dir / "d_closed_loop.png"))
        rows = "\n".join(
            f"| {arm} | {100 * v['engaged_rate']:.2f} | " + ", ".join(f"{100 * x['engaged_rate']:.1f}" for x in v["days"]) + " |"
            for arm, v in d["arms"].items())
        report.tables.append(
            f"| (d) closed loop: {d['warmup_days']} warm-up days, then {d['loop_days']} days served by the arm "
            f"({d['users']:,} users, {d['videos']:,} videos) | engaged, % of served personal slots | per day |\n"
            f"|---|---|---|\n{rows}")
        report.result["closed_loop_engaged_rate"] = {arm: v["engaged_rate"] for arm, v in d["arms"].items()}
        report.result["closed_loop_days"] = [x["date"] for x in d["arms"][next(iter(d["arms"]))]["days"]]
    report.result["plots"] = [str(p) for p in report.plots]
    atomic_write_json(out_dir / "monolith.json", report.result)
    return report
