"""A category classifier over caption and hashtag character n-grams, in numpy/scipy only.

Two linear models share one representation (``features.py``) and one file format:

- multinomial naive Bayes: ``W = log P(feature | class)`` (Lidstone ``alpha``) on tf-idf rows,
  ``b = log P(class)``; one pass over the data, well under a second on KuaiRec;
- multinomial logistic regression: softmax over ``X W + b`` with an L2 penalty, fitted by
  L-BFGS on tf-idf rows (a few seconds at ~20k features x 38 classes);
- and their ensemble: the mean of the two members' calibrated probabilities.

``TagClassifier.fit`` trains each candidate on part of the labelled videos, scores it (and the
ensemble) on the rest (a split by video id, so a video never sits on both sides), keeps the best
by validation accuracy (ties: macro-F1), fits each member a temperature on the same validation
part so ``confidence`` behaves like a probability (naive Bayes' raw posteriors are far too sure of
themselves), then retrains the winner on every labelled video. The model is saved as
``manifest.json`` + ``vocabulary.json`` + ``weights.npz`` (loaded with ``allow_pickle=False``):
no pickle, nothing executable.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from tiktok_pipelines.tagging.features import FeatureConfig, Vectorizer, doc_terms
from tiktok_pipelines.tagging.metrics import accuracy, held_out, macro_f1
from tiktok_pipelines.tagging.normalize import video_hashtags

FORMAT = "tiktok_pipelines.tagging/1"


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "nb" | "lr"
    alpha: float = 0.01  # nb: additive smoothing
    l2: float = 1e-5  # lr: penalty on W (per example, as the loss is a mean)
    balanced: bool = False  # lr: weigh classes equally (helps macro-F1, costs accuracy)
    max_iter: int = 50  # lr: L-BFGS iterations (stopping early regularises: 50 beat 100 on validation)
    tfidf: bool = True  # nb input: tf-idf rows (True) or raw counts

    @property
    def name(self) -> str:
        if self.kind == "nb":
            return f"nb(alpha={self.alpha:g}{', counts' if not self.tfidf else ''})"
        return f"lr(l2={self.l2:g}{', balanced' if self.balanced else ''})"


DEFAULT_CANDIDATES = (ModelSpec("nb", alpha=0.01), ModelSpec("lr", l2=1e-5, max_iter=50))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_nb(x: sp.csr_matrix, y: np.ndarray, k: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    onehot = sp.csr_matrix((np.ones(len(y)), (np.arange(len(y)), y)), shape=(len(y), k))
    fc = np.asarray((x.T @ onehot).todense()) + alpha  # F x K
    w = np.log(fc) - np.log(np.maximum(fc.sum(axis=0, keepdims=True), 1e-300))  # 0 features: no -inf
    prior = np.bincount(y, minlength=k) + 1.0
    return w, np.log(prior / prior.sum())


def _fit_lr(x: sp.csr_matrix, y: np.ndarray, k: int, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    n, f = x.shape
    if spec.balanced:
        counts = np.bincount(y, minlength=k).astype(np.float64)
        sw = (n / (k * np.maximum(counts, 1)))[y]
    else:
        sw = np.ones(n)
    sw = sw / sw.sum()
    xt = x.T.tocsr()
    rows = np.arange(n)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: f * k].reshape(f, k)
        b = theta[f * k:]
        z = x @ w + b
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        s = e.sum(axis=1, keepdims=True)
        lse = (np.log(s) + zmax).ravel()
        loss = float(np.dot(sw, lse - z[rows, y])) + 0.5 * spec.l2 * float(np.dot(theta[: f * k], theta[: f * k]))
        g = e / s
        g[rows, y] -= 1.0
        g *= sw[:, None]
        gw = xt @ g + spec.l2 * w
        return loss, np.concatenate([gw.ravel(), g.sum(axis=0)])

    theta = lbfgs(objective, np.zeros(f * k + k), max_iter=spec.max_iter)
    return theta[: f * k].reshape(f, k), theta[f * k:]


def lbfgs(fun, x0: np.ndarray, *, max_iter: int = 200, m: int = 10, gtol: float = 1e-6,
          ftol: float = 1e-9) -> np.ndarray:
    """Unconstrained L-BFGS (two-loop recursion, Armijo backtracking from a unit step).

    scipy's L-BFGS-B spent ~0.18 s per call on bound bookkeeping at ~1.8M parameters, ~3x the
    cost of the objective itself; the unconstrained recursion is a handful of dot products. ``fun(x) -> (value, gradient)``; the objective here is smooth and convex.
    """
    x = x0.astype(np.float64, copy=True)
    f, g = fun(x)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    rho: list[float] = []
    for _ in range(max_iter):
        if np.max(np.abs(g)) < gtol:
            break
        q = g.copy()
        alphas = []
        for s, yv, r in zip(reversed(s_hist), reversed(y_hist), reversed(rho), strict=True):
            a = r * float(np.dot(s, q))
            q -= a * yv
            alphas.append(a)
        if s_hist:
            q *= float(np.dot(s_hist[-1], y_hist[-1])) / float(np.dot(y_hist[-1], y_hist[-1]))
        else:
            q /= max(1.0, float(np.linalg.norm(g)))  # first step: a short steepest-descent one
        for (s, yv, r), a in zip(zip(s_hist, y_hist, rho, strict=True), reversed(alphas), strict=True):
            q += s * (a - r * float(np.dot(yv, q)))
        d = -q
        slope = float(np.dot(g, d))
        if slope >= 0:  # not a descent direction (numerical trouble): restart from the gradient
            s_hist.clear(); y_hist.clear(); rho.clear()
            d, slope = -g, -float(np.dot(g, g))
        step = 1.0
        for _ls in range(30):
            x_new = x + step * d
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        s_vec, y_vec = x_new - x, g_new - g
        sy = float(np.dot(s_vec, y_vec))
        if sy > 1e-12:
            s_hist.append(s_vec); y_hist.append(y_vec); rho.append(1.0 / sy)
            if len(s_hist) > m:
                s_hist.pop(0); y_hist.pop(0); rho.pop(0)
        converged = abs(f - f_new) <= ftol * max(1.0, abs(f))
        x, f, g = x_new, f_new, g_new
        if converged:
            break
    return x


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimising the validation negative log-likelihood of softmax(logits / T)."""
    if len(y) == 0:
        return 1.0
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, y]))

    # Imported here, not at the top: scipy.optimize is ~0.5 s of imports, and every Dagster run
    # worker imports this module with the code location; only a training run calibrates.
    import scipy.optimize as so

    res = so.minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded")
    return float(np.exp(res.x))


@dataclass
class Prepared:
    """Videos turned into feature counts once (selection and the final fit reuse them)."""

    terms: list
    hashtags: list[list[str]]


@dataclass
class Member:
    """One linear model: ``softmax((X W + b) / temperature)``."""

    spec: ModelSpec
    w: np.ndarray  # n_features x n_classes, float32
    b: np.ndarray  # n_classes
    temperature: float = 1.0


def _train_member(x_counts: sp.csr_matrix, x_tfidf: sp.csr_matrix, y: np.ndarray, k: int, spec: ModelSpec) -> Member:
    if spec.kind == "nb":
        w, b = _fit_nb(x_tfidf if spec.tfidf else x_counts, y, k, spec.alpha)
    elif spec.kind == "lr":
        w, b = _fit_lr(x_tfidf, y, k, spec)
    else:
        raise ValueError(f"unknown model kind {spec.kind!r}")
    return Member(spec, np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float64))


def _member_logits(m: Member, x_counts: sp.csr_matrix, x_tfidf: sp.csr_matrix) -> np.ndarray:
    x = x_counts if (m.spec.kind == "nb" and not m.spec.tfidf) else x_tfidf
    return np.asarray(x @ m.w.astype(np.float64)) + m.b


def _proba(members: Sequence[Member], x_counts: sp.csr_matrix, x_tfidf: sp.csr_matrix) -> np.ndarray:
    """The mean of the members' calibrated probabilities (one member: just its own)."""
    p = sum(_softmax(_member_logits(m, x_counts, x_tfidf) / m.temperature) for m in members)
    return p / len(members)


def _label(specs: Sequence[ModelSpec]) -> str:
    return " + ".join(s.name for s in specs)


class TagClassifier:
    """A vocabulary and one or more linear members over it; see the module docstring."""

    def __init__(self, vectorizer: Vectorizer, members: list[Member], classes: list[str],
                 info: dict | None = None) -> None:
        self.vectorizer = vectorizer
        self.members = members
        self.classes = list(classes)
        self.info = dict(info or {})

    @property
    def name(self) -> str:
        return _label([m.spec for m in self.members])

    # ------------------------------------------------------------------ training
    @staticmethod
    def prepare(captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None],
                cfg: FeatureConfig) -> Prepared:
        tags = [video_hashtags(c, h) for c, h in zip(captions, hashtags, strict=True)]
        return Prepared([doc_terms(c, t, cfg) for c, t in zip(captions, tags, strict=True)], tags)

    @classmethod
    def fit(cls, captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None],
            labels: Sequence[str], ids: Sequence[int], *, features: FeatureConfig | None = None,
            candidates: Sequence[ModelSpec] = DEFAULT_CANDIDATES, ensemble: bool = True,
            val_fraction: float = 0.2, salt: int = 1, min_val: int = 30,
            selected: Sequence[tuple[ModelSpec, float]] | None = None) -> TagClassifier:
        """Select on a validation split by id, calibrate, retrain on every labelled video.

        Each candidate is trained on the non-validation part and scored on the validation part,
        and so is the average of all candidates (``ensemble``); the best by validation accuracy
        (ties: macro-F1) wins, with temperatures fitted on the same part. ``salt`` differs from
        the evaluation split's (0), so validation never reuses the exact held-out cut. With fewer
        than ``min_val`` videos on either side there is nothing to select on: the first
        candidate is trained on everything and its temperature stays 1. ``selected``: members
        (spec, temperature) chosen by an earlier fit on the same kind of data; no selection then.
        """
        cfg = features or FeatureConfig()
        if len(labels) == 0:
            raise ValueError("no labelled videos to learn from")
        if not candidates:
            raise ValueError("no candidate models")
        t0 = time.perf_counter()
        prep = cls.prepare(captions, hashtags, cfg)
        classes = sorted(set(labels))
        k = len(classes)
        cidx = {c: i for i, c in enumerate(classes)}
        y = np.array([cidx[c] for c in labels], dtype=np.int64)
        val = held_out(ids, val_fraction, salt=salt)
        trials: list[dict] = []
        chosen: list[ModelSpec] = [candidates[0]]
        temps: dict[ModelSpec, float] = {candidates[0]: 1.0}
        if selected:
            chosen = [spec for spec, _ in selected]
            temps = dict(selected)
        elif val.sum() >= min_val and (~val).sum() >= min_val:
            tr, va = np.flatnonzero(~val), np.flatnonzero(val)
            vec = Vectorizer(cfg).fit([prep.terms[i] for i in tr])
            ca, cb = vec.counts([prep.terms[i] for i in tr]), vec.counts([prep.terms[i] for i in va])
            xa, xb = vec.tfidf(ca), vec.tfidf(cb)
            truth = [classes[i] for i in y[va]]
            options: list[tuple[list[ModelSpec], list[Member]]] = []
            for spec in candidates:
                s0 = time.perf_counter()
                m = _train_member(ca, xa, y[tr], k, spec)
                m.temperature = fit_temperature(_member_logits(m, cb, xb), y[va])
                temps[spec] = m.temperature
                options.append(([spec], [m]))
                trials[len(trials):] = [{"model": spec.name, "temperature": round(m.temperature, 4),
                                         "seconds": round(time.perf_counter() - s0, 3)}]
            if ensemble and len(candidates) > 1:
                options.append((list(candidates), [o[1][0] for o in options]))
                trials.append({"model": _label(candidates), "seconds": 0.0})
            best_key = None
            for trial, (specs, members) in zip(trials, options, strict=True):
                p = _proba(members, cb, xb)
                pred = [classes[i] for i in p.argmax(axis=1)]
                key = (accuracy(truth, pred), macro_f1(truth, pred))
                trial.update(val_accuracy=round(key[0], 4), val_macro_f1=round(key[1], 4),
                             val_log_loss=round(float(-np.mean(np.log(p[np.arange(len(va)), y[va]] + 1e-12))), 4))
                if best_key is None or key > best_key:
                    best_key, chosen = key, specs
        vec = Vectorizer(cfg).fit(prep.terms)
        counts = vec.counts(prep.terms)
        x = vec.tfidf(counts)
        members = []
        for spec in chosen:
            m = _train_member(counts, x, y, k, spec)
            m.temperature = temps.get(spec, 1.0)
            members.append(m)
        info = {
            "selected": _label(chosen), "trials": trials,
            "selection_rule": "validation accuracy, then macro-F1 (split by video id, salt 1)",
            "train_videos": len(labels), "validation_videos": int(val.sum()) if trials else 0,
            "preselected": bool(selected),
            "class_counts": {c: int(n) for c, n in zip(classes, np.bincount(y, minlength=k), strict=True)},
            "train_seconds": round(time.perf_counter() - t0, 3),
        }
        return cls(vec, members, classes, info)

    # ------------------------------------------------------------------ inference
    def predict_proba(self, captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None]) -> np.ndarray:
        prep = self.prepare(captions, hashtags, self.vectorizer.cfg)
        counts = self.vectorizer.counts(prep.terms)
        return _proba(self.members, counts, self.vectorizer.tfidf(counts))

    def predict(self, captions: Sequence[str | None],
                hashtags: Sequence[Iterable[str] | None]) -> tuple[list[str], np.ndarray]:
        """Category and confidence (the calibrated probability of that category) per video."""
        if len(captions) == 0:
            return [], np.zeros(0)
        p = self.predict_proba(captions, hashtags)
        best = p.argmax(axis=1)
        return [self.classes[i] for i in best], p[np.arange(len(best)), best]

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> Path:
        """Write the model files, then the manifest (with their sha256) last: a directory without
        a manifest is an unfinished save."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").unlink(missing_ok=True)
        arrays = {"idf": self.vectorizer.idf}
        for i, m in enumerate(self.members):
            arrays[f"w{i}"], arrays[f"b{i}"] = m.w, m.b
        np.savez_compressed(d / "weights.npz", **arrays)
        (d / "vocabulary.json").write_text(json.dumps(self.vectorizer.vocabulary, ensure_ascii=False), encoding="utf-8")
        files = {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in ("weights.npz", "vocabulary.json")}
        manifest = {
            "format": FORMAT, "model": self.name, "classes": self.classes,
            "members": [{"spec": asdict(m.spec), "temperature": m.temperature} for m in self.members],
            "features": self.vectorizer.cfg.to_dict(), "n_features": self.vectorizer.n_features,
            "info": self.info, "files": files,
        }
        (d / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        return d

    def save_atomic(self, directory: str | Path) -> Path:
        """Save beside ``directory``, then swap it in with renames: a reader finds the old model
        or the new one (each with its manifest), never a mix."""
        import os
        import shutil

        d = Path(directory)
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = d.with_name(f".{d.name}.tmp-{os.getpid()}")
        old = d.with_name(f".{d.name}.old-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        self.save(tmp)
        if d.exists():
            os.replace(d, old)
        os.replace(tmp, d)
        shutil.rmtree(old, ignore_errors=True)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> TagClassifier:
        d = Path(directory)
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{d}: not a {FORMAT} model (format {manifest.get('format')!r})")
        for name, digest in manifest["files"].items():
            if hashlib.sha256((d / name).read_bytes()).hexdigest() != digest:
                raise ValueError(f"{d / name}: checksum does not match the manifest")
        with np.load(d / "weights.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        vocab = json.loads((d / "vocabulary.json").read_text(encoding="utf-8"))
        vec = Vectorizer(FeatureConfig(**manifest["features"]), vocab, arrays["idf"])
        members = [Member(ModelSpec(**m["spec"]), arrays[f"w{i}"], arrays[f"b{i}"], m["temperature"])
                   for i, m in enumerate(manifest["members"])]
        return cls(vec, members, manifest["classes"], manifest.get("info"))
