"""The tagger against its baseline (char 1-3-gram TF-IDF + LinearSVC) over five splits of KuaiRec.

    OMP_NUM_THREADS=1 python benchmarks/tagging_splits.py [../shared/data/kuairec/video_captions.csv]

Each split is ``split_captions_csv(..., salt=s)`` (s = 0..4, 20% of the videos held out by id),
scored with ``evaluate_files``: everything the tagger chooses, it chooses on the training file.
Prints one line per split, then mean ± std, then a JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tiktok_pipelines.tagging.evaluate import evaluate_splits

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "kuairec" / "video_captions.csv"


def main() -> None:
    src = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    r = evaluate_splits(src, salts=range(5))
    for s in r["splits"]:
        print(f"salt {s['salt']}: tagger {s['accuracy']:.4f} baseline {s['baseline_accuracy']:.4f} "
              f"(macro-F1 {s['macro_f1']:.4f} / {s['baseline_macro_f1']:.4f}; {s['model']}, "
              f"T {s['temperature']:.3f}, rules weight {s['rules_weight']:g}, {s['train_seconds']:.0f} s)", flush=True)
    for k, v in r["summary"].items():
        print(f"{k}: {v['mean']:.4f} ± {v['std']:.4f}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
