"""PNG plots of the Monolith experiments (matplotlib, Agg backend: no display needed).

Each function takes the JSON-able result dict its experiment returns and writes one PNG; the
results are the source of truth (saved beside the plots), the plots only draw them.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

from tiktok_pipelines import publish

matplotlib.use("Agg")  # before pyplot: a server or CI has no display
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    publish.atomic_write_bytes(path, buf.getvalue())  # a reader never sees half a PNG
    return path


def plot_sync_intervals(result: dict, path: Path) -> Path:
    """(a) AUC on the following period: baselines, batch only, and online by sync interval
    (Monolith, Table 2); bars are means over the seeds, whiskers one standard deviation."""
    std = result["std"]
    names = ["popularity", "MF", "batch only"] + [n.replace("_", " ") for n in result["auc_online_by_sync"]]
    values = [result["auc_popularity"], result["auc_mf"], result["auc_batch"],
              *result["auc_online_by_sync"].values()]
    errors = [std["auc_popularity"], std["auc_mf"], std["auc_batch"],
              *(std[f"auc_online_{n}"] for n in result["auc_online_by_sync"])]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bars = ax.bar(names, values, yerr=errors, capsize=3,
                  color=["#bbbbbb", "#bbbbbb", "#888888"] + ["#2a7ab0"] * (len(names) - 3))
    ax.bar_label(bars, fmt="%.4f", fontsize=8)
    lo, hi = min(values), max(values)
    ax.set_ylim(lo - 3 * (hi - lo + 1e-3), hi + 2 * (hi - lo + 1e-3))
    ax.set_ylabel("AUC, following period")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"(a) baselines, batch and online sync ({len(result['seeds'])} seeds)")
    return _save(fig, path)


def plot_collisionless_vs_hashing(result: dict, path: Path) -> Path:
    """(b) AUC and the share of ids sharing a row, at equal parameter count (Monolith, Fig. 7)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.6))
    keys = ["auc_collisionless", "auc_hashing", "auc_hashing_equal_memory"]
    aucs = [result[k] for k in keys]
    bars = ax1.bar(["collisionless", "hashing\n(equal params)", "hashing\n(equal memory)"], aucs,
                   yerr=[result["std"][k] for k in keys], capsize=3, color=["#2a7ab0", "#c0504d", "#e0a09d"])
    ax1.bar_label(bars, fmt="%.4f", fontsize=8)
    lo, hi = min(aucs), max(aucs)
    ax1.set_ylim(lo - 3 * (hi - lo + 1e-3), hi + 2 * (hi - lo + 1e-3))
    ax1.set_ylabel("AUC")
    ax1.set_title("(b) collisionless vs hashing trick")
    rates = result["hashing_collision_rate"]
    bars = ax2.bar(list(rates), [100 * v for v in rates.values()], color="#c0504d")
    ax2.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax2.set_ylabel("% of distinct ids sharing a row")
    ax2.set_title("collisions at equal parameter count")
    return _save(fig, path)


def plot_closed_loop(result: dict, path: Path) -> Path:
    """(d) engagement of served recommendations per simulated day, by arm."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    styles = {"random": ("#aaaaaa", ":"), "simulator_policy": ("#555555", "--"),
              "batch_only": ("#c0504d", "-"), "online": ("#2a7ab0", "-")}
    for arm, data in result["arms"].items():
        color, ls = styles.get(arm, (None, "-"))
        xs = [d["date"][5:] for d in data["days"]]
        ax.plot(xs, [100 * d["engaged_rate"] for d in data["days"]], marker="o", color=color, linestyle=ls,
                label=f"{arm} ({100 * data['engaged_rate']:.1f}%)")
    ax.set_ylabel("engaged, % of served personal slots")
    ax.set_xlabel("simulated day (model serves, users react)")
    ax.set_title("(d) closed loop: batch-only vs online (daily sync)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_freshness(latencies_s: list[float], path: Path) -> Path:
    """(c) event landed -> delta served, per round."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist(latencies_s, bins=min(20, max(5, len(latencies_s))), color="#2a7ab0")
    ax.set_xlabel("seconds from landing to the delta served")
    ax.set_ylabel("rounds")
    ax.set_title("(c) freshness")
    return _save(fig, path)
