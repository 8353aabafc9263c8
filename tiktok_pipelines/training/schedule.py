"""Training to convergence, the same way for every arm: early stopping on a time-later slice.

The last ``validation_fraction`` of the training window by time (ties kept together) is held out;
the model trains epoch by epoch on the rest until the validation log loss has not improved for
``patience`` epochs. The number of epochs with the best loss is then used to train a fresh model
on the *whole* window, so the newest examples, which matter most for what comes next, are not
left out of the model that is evaluated or served. Nothing here looks past the training window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tiktok_pipelines.training.evaluate import log_loss
from tiktok_pipelines.training.features import labels

MIN_VALIDATION_EXAMPLES = 50


@dataclass
class EpochReport:
    epochs: int  # the epochs the final model was trained for
    validation_log_loss: list[float] = field(default_factory=list)  # per epoch; empty if not selected
    fit_examples: int = 0
    validation_examples: int = 0

    def to_json(self) -> dict:
        return {"epochs": self.epochs, "validation_log_loss": [round(x, 5) for x in self.validation_log_loss],
                "fit_examples": self.fit_examples, "validation_examples": self.validation_examples}


def time_ordered(table: pa.Table) -> pa.Table:
    order = np.argsort(table.column("ts_ms").to_numpy(), kind="stable")
    return table.take(pa.array(order))


def validation_split(table: pa.Table, fraction: float) -> tuple[pa.Table, pa.Table]:
    """(earlier part, later part) of a time-ordered table; equal timestamps stay on one side."""
    ts = table.column("ts_ms").to_numpy()
    cut = int(np.searchsorted(ts, ts[int(len(ts) * (1 - fraction))], side="left")) if len(ts) else 0
    return table.slice(0, cut), table.slice(cut)


def fit_epochs(table: pa.Table, *, start: Callable[[pa.Table], None],
               epoch: Callable[[pa.Table, np.random.Generator], None],
               predict: Callable[[pa.Table], np.ndarray], epochs: int | None = None, max_epochs: int = 30,
               patience: int = 2, validation_fraction: float = 0.1, fallback_epochs: int = 1,
               seed: int = 0) -> EpochReport:
    """``start(train)`` makes a fresh model for a training table, ``epoch(train, rng)`` runs one
    pass over it, ``predict(table)`` scores. ``epochs`` given: train that many on the whole table
    (the same model a selection that chose ``epochs`` ends with). Returns how the epochs were chosen."""
    table = time_ordered(table)
    if epochs is not None:
        report = EpochReport(epochs, [], table.num_rows, 0)
        _final_fit(table, start, epoch, epochs, seed)
        return report
    fit_part, validation = validation_split(table, validation_fraction)
    y_val = labels(validation)
    report = EpochReport(fallback_epochs, [], fit_part.num_rows, validation.num_rows)
    if fit_part.num_rows and validation.num_rows >= MIN_VALIDATION_EXAMPLES and 0 < y_val.mean() < 1:
        rng = np.random.default_rng(seed)
        start(fit_part)
        best, since_best = float("inf"), 0
        for _ in range(max_epochs):
            epoch(fit_part, rng)
            loss = log_loss(y_val, predict(validation))
            report.validation_log_loss.append(loss)
            if loss < best - 1e-5:
                best, since_best = loss, 0
            else:
                since_best += 1
                if since_best >= patience:
                    break
        report.epochs = int(np.argmin(report.validation_log_loss)) + 1
    _final_fit(table, start, epoch, report.epochs, seed)
    return report


def _final_fit(table: pa.Table, start: Callable[[pa.Table], None],
               epoch: Callable[[pa.Table, np.random.Generator], None], epochs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    start(table)
    for _ in range(epochs):
        epoch(table, rng)
