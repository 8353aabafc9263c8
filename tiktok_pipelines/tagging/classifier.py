"""A category classifier over caption and hashtag character n-grams, with scikit-learn.

``TfidfVectorizer`` (``features.py``) feeds a linear model — ``LinearSVC`` (one-vs-rest squared
hinge) or ``SGDClassifier`` (logistic loss) — whose scores become probabilities by temperature
scaling (one scalar ``T``: ``softmax(scores / T)``), fitted on out-of-fold scores.

``TagClassifier.fit`` scores each candidate by cross-validation on the labelled videos (folds
by video id, so a video never sits on both sides), keeps the best by out-of-fold accuracy (ties:
macro-F1), fits its temperature and chooses the rules' weight on the same out-of-fold scores,
then retrains the winner on every labelled video. Only the training data decides any of it.

Probabilities are ``softmax(beta * (X @ coef.T + intercept) + rules)``, computed here from plain arrays,
so a model loaded from its files predicts exactly what the fitted one does. The model directory:
``manifest.json`` (classes, spec, ``beta``, feature config, sha256 of the other files, written
last), ``vocabulary.json``, ``idf.npy``, ``coef.npy``, ``intercept.npy`` (``allow_pickle=False``),
``taxonomy.json`` (the rules it was fitted with): no pickle, nothing executable.

The taxonomy's hashtag and keyword rules (``taxonomy.RulesTagger``) add to the calibrated logit of
the category they name (weight chosen in ``RULES_WEIGHTS``): measured, they help macro-F1 a lot
and accuracy by about a point.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tiktok_pipelines.publish import file_sha256s, publish_dir
from tiktok_pipelines.tagging.features import FeatureConfig, make_vectorizer, video_docs, vocabulary_list
from tiktok_pipelines.tagging.metrics import accuracy, folds, macro_f1
from tiktok_pipelines.tagging.normalize import video_hashtags
from tiktok_pipelines.tagging.taxonomy import RulesTagger, Taxonomy, load_taxonomy

FORMAT = "tiktok_pipelines.tagging/2"
ARRAYS = ("idf", "coef", "intercept")


@dataclass(frozen=True)
class ModelSpec:
    kind: str = "svc"  # "svc": LinearSVC | "sgd": SGDClassifier, logistic loss
    c: float = 1.0  # svc: inverse L2 strength
    alpha: float = 1e-5  # sgd: L2 strength
    balanced: bool = False  # weigh classes equally (helps macro-F1, costs accuracy)

    @property
    def name(self) -> str:
        b = ", balanced" if self.balanced else ""
        if self.kind == "svc":
            return f"linear_svc(C={self.c:g}{b})"
        return f"sgd_logistic(alpha={self.alpha:g}{b})"

    def estimator(self):
        weight = "balanced" if self.balanced else None
        if self.kind == "svc":
            from sklearn.svm import LinearSVC

            # liblinear shuffles with a seed drawn from numpy's global state unless given one
            return LinearSVC(C=self.c, class_weight=weight, random_state=0)
        if self.kind == "sgd":
            from sklearn.linear_model import SGDClassifier

            return SGDClassifier(loss="log_loss", alpha=self.alpha, class_weight=weight, max_iter=50,
                                 tol=1e-4, random_state=0)
        raise ValueError(f"unknown model kind {self.kind!r}")


# 4-fold cross-validated accuracy on two KuaiRec training files (docs/tagging.md), char 1-2-grams:
# C=0.5 0.424/0.425, C=0.3 0.422/0.425, C=1 0.420/0.423 (char 1-3: C=2 0.409); SGD's logistic
# loss and class-balanced SVC were lower still.
DEFAULT_CANDIDATES = (ModelSpec("svc", c=0.5), ModelSpec("svc", c=0.3))
# Folds by hash(video id ^ CV_SALT): a constant no evaluation split uses. (Validating with
# ``held_out(salt=1)`` left no validation videos at all when the evaluation split was salt 1 too:
# the training part is exactly the ids that hash outside it, so the model went uncalibrated.)
CV_FOLDS, CV_SALT = 4, 0x7A66_C0DE_5EED_F01D
# The taxonomy rules' category gets ``weight * min(score, 3) / 3`` added to its calibrated logit
# (score 3: an exact taxonomy hashtag); ``fit`` chooses the weight among RULES_WEIGHTS on out-of-fold
# scores. On KuaiRec's training part: +1 point of accuracy at 1.5-2, less at 0.5-1, none at 3
# (letting the rules overrule the classifier outright, at any score or confidence threshold, hurt).
# RULES_WEIGHT: the weight when there is too little data to choose.
RULES_WEIGHTS = (0.0, 1.0, 1.5, 2.0, 3.0)
RULES_WEIGHT = 2.0


def _linear_arrays(est, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A fitted estimator's weights as (coef K x F, intercept K) over ``classes``; a binary model's
    single row becomes the two rows (-w, w), the logits sklearn's temperature scaling uses; a class
    the estimator never saw gets a score that never wins (so it is never predicted)."""
    coef, b = np.asarray(est.coef_, dtype=np.float64), np.asarray(est.intercept_, dtype=np.float64)
    if coef.shape[0] == 1 and len(est.classes_) == 2:
        coef, b = np.vstack([-coef, coef]), np.concatenate([-b, b])
    full_w = np.zeros((len(classes), coef.shape[1]))
    full_b = np.full(len(classes), -1e9)
    rows = [classes.index(c) for c in est.classes_]
    full_w[rows], full_b[rows] = coef, b
    return full_w.astype(np.float32), full_b


def _fit_linear(spec: ModelSpec, x, y: list[str], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if len(set(y)) < 2:  # one class: nothing to separate; it always wins
        return np.zeros((len(classes), x.shape[1]), dtype=np.float32), np.where(
            np.array(classes) == y[0], 0.0, -1e9)
    return _linear_arrays(spec.estimator().fit(x, y), classes)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray, offset: np.ndarray | float = 0.0) -> float:
    """The T minimising the log loss (``sklearn.metrics.log_loss``) of ``softmax(logits / T + offset)``
    against ``y`` (column indices of ``logits``); ``offset``: the rules' boost, which is not scaled.

    Not ``CalibratedClassifierCV(FrozenEstimator(model), method="temperature")``: it label-encodes
    the labels it is given, so when a rare class is absent from the held-out fold
    (KuaiRec has classes of 1-3 videos) label ``i`` no longer names the model's column ``i``.
    """
    if len(y) == 0:
        return 1.0
    # Imported here: scipy.optimize and sklearn.metrics' log_loss are only needed by a training run,
    # and every Dagster run worker imports this module with the code location.
    import scipy.optimize as so
    from sklearn.metrics import log_loss

    labels = np.arange(logits.shape[1])
    res = so.minimize_scalar(lambda log_t: log_loss(y, _softmax(logits / np.exp(log_t) + offset), labels=labels),
                             bounds=(-4.0, 4.0), method="bounded")
    return float(np.exp(res.x))


def _out_of_fold_scores(candidates: Sequence[ModelSpec], docs: list[str], labels: list[str], classes: list[str],
                        fold: np.ndarray, cfg: FeatureConfig) -> list[np.ndarray]:
    """Each candidate's scores for every video from the model trained on the other folds (the
    vectoriser refitted per fold too, as a held-out video would meet it)."""
    y = np.array(labels, dtype=object)
    out = [np.zeros((len(docs), len(classes))) for _ in candidates]
    for k in sorted(set(fold.tolist())):
        tr, va = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        vec = make_vectorizer(cfg)
        x_tr = vec.fit_transform([docs[i] for i in tr])
        x_va = vec.transform([docs[i] for i in va])
        for cand, sc in zip(candidates, out, strict=True):
            w, b = _fit_linear(cand, x_tr, y[tr].tolist(), classes)
            sc[va] = np.asarray(x_va @ w.T.astype(np.float64)) + b
    return out


def choose_calibration(scores: np.ndarray, y: np.ndarray, boost: np.ndarray,
                       weights: Sequence[float]) -> tuple[float, float, list[dict]]:
    """(beta, rules weight, trials): for each weight ``w`` the temperature ``T`` of
    ``softmax(scores / T + w * boost)`` (``fit_temperature``), then the weight whose argmax is most
    often right (ties: the smaller log loss). ``boost``: ``rules_boost`` at weight 1; ``y``: columns.

    The weight is chosen with the temperature because only their ratio moves the argmax: a weight
    fitted at one scale of scores is wrong at another (LinearSVC's scores shrink with C).
    """
    from sklearn.metrics import log_loss

    labels = np.arange(scores.shape[1])
    best, trials = None, []
    for w in weights:
        t = fit_temperature(scores, y, w * boost)
        z = scores / t + w * boost
        key = (float((z.argmax(axis=1) == y).mean()), -log_loss(y, _softmax(z), labels=labels))
        trials.append({"rules_weight": w, "temperature": round(t, 4), "cv_accuracy": round(key[0], 4),
                       "cv_log_loss": round(-key[1], 4)})
        if best is None or key > best[0]:
            best = (key, 1.0 / t, float(w))
    return best[1], best[2], trials


def rules_boost(rules: RulesTagger, weight: float, classes: Sequence[str], captions: Sequence[str | None],
                hashtags: Sequence[Iterable[str] | None]) -> np.ndarray:
    """What the taxonomy rules add to each class's calibrated logit: ``weight * min(score, 3) / 3``
    for the category they name (``weight``: chosen by ``TagClassifier.fit``)."""
    boost = np.zeros((len(captions), len(classes)))
    if weight:
        col = {c: i for i, c in enumerate(classes)}
        for i, (c, h) in enumerate(zip(captions, hashtags, strict=True)):
            m = rules.match(c, video_hashtags(c, h))
            if m.category in col:
                boost[i, col[m.category]] = weight * min(m.score, 3.0) / 3.0
    return boost


class TagClassifier:
    """A fitted vectoriser and one linear model over it, with its inverse temperature ``beta``."""

    def __init__(self, features: FeatureConfig, vocabulary: list[str], idf: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray, classes: list[str], spec: ModelSpec, beta: float = 1.0,
                 info: dict | None = None, taxonomy: Taxonomy | None = None, rules_weight: float = 0.0,
                 rules_prior: Sequence[str] = ()) -> None:
        self.features = features
        self.vectorizer = make_vectorizer(features, vocabulary, idf)
        self.vocabulary, self.idf = vocabulary, np.asarray(idf, dtype=np.float64)
        self.coef, self.intercept = coef, np.asarray(intercept, dtype=np.float64)
        self.classes = list(classes)
        self.spec, self.beta = spec, float(beta)
        self.info = dict(info or {})
        self.rules_weight, self.rules_prior = float(rules_weight), list(rules_prior)
        self.taxonomy = taxonomy or load_taxonomy()
        self.rules = RulesTagger(self.taxonomy, labels=self.classes, prior=self.rules_prior)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def temperature(self) -> float:
        return 1.0 / self.beta

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(cls, captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None],
            labels: Sequence[str], ids: Sequence[int], *, features: FeatureConfig | None = None,
            candidates: Sequence[ModelSpec] = DEFAULT_CANDIDATES, cv_folds: int = CV_FOLDS, min_val: int = 30,
            selected: tuple | None = None, taxonomy: Taxonomy | None = None,
            rules_weights: Sequence[float] = RULES_WEIGHTS) -> TagClassifier:
        """Select by cross-validation on the labelled videos, calibrate, retrain on all of them.

        ``cv_folds`` folds by video id hash (``CV_SALT``, unrelated to any evaluation split, so no
        fold is ever empty), each candidate's out-of-fold scores give its accuracy; the winner's
        out-of-fold scores then fit the temperature and choose the rules' weight from
        ``rules_weights`` (``choose_calibration``). With fewer than ``cv_folds * min_val`` videos
        there is nothing to select or calibrate on: the first candidate is trained on everything,
        temperature 1, rules weight ``RULES_WEIGHT``.
        ``selected``: (spec, beta, rules_weight) chosen by an earlier fit on the same kind of data
        (``TagClassifier.selection``); no selection.
        """
        cfg = features or FeatureConfig()
        taxonomy = taxonomy or load_taxonomy()
        if len(labels) == 0:
            raise ValueError("no labelled videos to learn from")
        if not candidates:
            raise ValueError("no candidate models")
        t0 = time.perf_counter()
        docs = video_docs(captions, hashtags)
        labels = list(labels)
        classes = sorted(set(labels))
        counts = {c: labels.count(c) for c in classes}
        prior = sorted(classes, key=lambda c: (-counts[c], c))  # rule ties go to the more frequent class
        fold = folds(ids, cv_folds, CV_SALT)
        trials: list[dict] = []
        spec, beta, weight = candidates[0], 1.0, RULES_WEIGHT
        if selected:
            spec, beta, weight = selected
        elif len(labels) >= cv_folds * min_val and len(classes) > 1 and len(set(fold.tolist())) == cv_folds:
            scores = _out_of_fold_scores(candidates, docs, labels, classes, fold, cfg)
            best = None
            for cand, sc in zip(candidates, scores, strict=True):
                pred = [classes[i] for i in sc.argmax(axis=1)]
                key = (accuracy(labels, pred), macro_f1(labels, pred))
                trials.append({"model": cand.name, "cv_accuracy": round(key[0], 4), "cv_macro_f1": round(key[1], 4)})
                if best is None or key > best[0]:
                    best, spec = (key, sc), cand
            rules = RulesTagger(taxonomy, labels=classes, prior=prior)
            boost = rules_boost(rules, 1.0, classes, captions, hashtags)
            # a class missing from a fold's training part has no score there: those videos are left out
            seen = [set(labels[i] for i in np.flatnonzero(fold != k)) for k in range(cv_folds)]
            rows = np.array([i for i, c in enumerate(labels) if c in seen[fold[i]]], dtype=np.int64)
            cidx = {c: i for i, c in enumerate(classes)}
            beta, weight, cal = choose_calibration(best[1][rows], np.array([cidx[labels[i]] for i in rows]),
                                                   boost[rows], rules_weights)
            trials += cal
            trials.append({"model": spec.name, "selected": True, "temperature": round(1 / beta, 4),
                           "rules_weight": weight})
        vec = make_vectorizer(cfg)
        x = vec.fit_transform(docs)
        coef, intercept = _fit_linear(spec, x, labels, classes)
        info = {
            "selected": spec.name, "trials": trials,
            "selection_rule": (f"{cv_folds}-fold cross-validated accuracy, then macro-F1 (folds by video id); "
                               "temperature and rules weight on the out-of-fold scores"),
            "train_videos": len(labels), "cv_folds": cv_folds if trials else 0,
            "preselected": bool(selected), "n_features": len(vec.vocabulary_),
            "class_counts": counts,
            "train_seconds": round(time.perf_counter() - t0, 3),
        }
        return cls(cfg, vocabulary_list(vec), vec.idf_, coef, intercept, classes, spec, beta, info,
                   taxonomy=taxonomy, rules_weight=weight, rules_prior=prior)

    @property
    def selection(self) -> tuple[ModelSpec, float, float]:
        """What ``fit(selected=...)`` takes to train the same kind of model without selecting again."""
        return self.spec, self.beta, self.rules_weight

    # ------------------------------------------------------------------ inference
    def decision_function(self, captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None]) -> np.ndarray:
        x = self.vectorizer.transform(video_docs(captions, hashtags))
        return np.asarray(x @ self.coef.T.astype(np.float64)) + self.intercept

    def rules_boost(self, captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None]) -> np.ndarray:
        return rules_boost(self.rules, self.rules_weight, self.classes, captions, hashtags)

    def predict_proba(self, captions: Sequence[str | None], hashtags: Sequence[Iterable[str] | None]) -> np.ndarray:
        return _softmax(self.beta * self.decision_function(captions, hashtags) + self.rules_boost(captions, hashtags))

    def predict(self, captions: Sequence[str | None],
                hashtags: Sequence[Iterable[str] | None]) -> tuple[list[str], np.ndarray]:
        """Category and confidence (the calibrated probability of that category) per video."""
        if len(captions) == 0:
            return [], np.zeros(0)
        p = self.predict_proba(captions, hashtags)
        best = p.argmax(axis=1)
        return [self.classes[i] for i in best], p[np.arange(len(best)), best]

    # ------------------------------------------------------------------ files
    def _write_files(self, d: Path) -> None:
        for name in ARRAYS:
            np.save(d / f"{name}.npy", getattr(self, name), allow_pickle=False)
        (d / "vocabulary.json").write_text(json.dumps(self.vocabulary, ensure_ascii=False), encoding="utf-8")
        (d / "taxonomy.json").write_text(json.dumps(taxonomy_dict(self.taxonomy), ensure_ascii=False, indent=1),
                                         encoding="utf-8")

    def _manifest(self, d: Path) -> dict:
        return {
            "format": FORMAT, "model": self.name, "classes": self.classes, "spec": asdict(self.spec),
            "beta": self.beta, "rules_weight": self.rules_weight, "rules_prior": self.rules_prior,
            "features": self.features.to_dict(), "n_features": len(self.vocabulary),
            "info": self.info, "files": {n: h for n, h in file_sha256s(d).items() if n != "manifest.json"},
        }

    def save(self, directory: str | Path) -> Path:
        """Write the model files into ``directory``, the manifest (with their sha256) last: a
        directory without a manifest is an unfinished save. Not atomic: see ``save_atomic``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").unlink(missing_ok=True)
        self._write_files(d)
        (d / "manifest.json").write_text(json.dumps(self._manifest(d), ensure_ascii=False, indent=1), encoding="utf-8")
        return d

    def save_atomic(self, directory: str | Path) -> Path:
        """Publish the model as ``directory`` with ``publish.publish_dir(replace=True)``: a link
        swapped to the new version, so a reader finds the old model or the new one, whole, and
        never no model."""
        d = Path(directory)
        with publish_dir(d, replace=True, manifest=self._manifest) as tmp:
            self._write_files(tmp)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> TagClassifier:
        d = Path(directory).resolve()  # one version's files, even if a new one is published meanwhile
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{d}: not a {FORMAT} model (format {manifest.get('format')!r})")
        actual = file_sha256s(d)
        for name, digest in manifest["files"].items():
            if actual.get(name) != digest:
                raise ValueError(f"{d / name}: checksum does not match the manifest")
        arrays = {n: np.load(d / f"{n}.npy", allow_pickle=False) for n in ARRAYS}
        vocab = json.loads((d / "vocabulary.json").read_text(encoding="utf-8"))
        return cls(FeatureConfig(**manifest["features"]), vocab, arrays["idf"], arrays["coef"], arrays["intercept"],
                   manifest["classes"], ModelSpec(**manifest["spec"]), manifest["beta"], manifest.get("info"),
                   taxonomy=load_taxonomy(d / "taxonomy.json"), rules_weight=manifest["rules_weight"],
                   rules_prior=manifest["rules_prior"])


def taxonomy_dict(t: Taxonomy) -> dict:
    """A taxonomy as its file's JSON (already normalised terms, which load_taxonomy keeps as they are)."""
    return {"version": t.version, "categories": [
        {"name": c.name, "aliases": list(c.aliases), "hashtags": list(c.hashtags), "keywords": list(c.keywords)}
        for c in t.categories]}
