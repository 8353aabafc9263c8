"""Content tagging (no Dagster import): hashtag normalisation, the taxonomy rules, a character
n-gram classifier of first-level categories (scikit-learn), and its evaluation against three
baselines."""

from tiktok_pipelines.tagging.classifier import (
    DEFAULT_CANDIDATES,
    ModelSpec,
    TagClassifier,
)
from tiktok_pipelines.tagging.evaluate import (
    evaluate_files,
    read_captions_csv,
    split_captions_csv,
)
from tiktok_pipelines.tagging.features import FeatureConfig
from tiktok_pipelines.tagging.metrics import accuracy, held_out, macro_f1, majority
from tiktok_pipelines.tagging.normalize import (
    normalize_hashtag,
    normalize_hashtags,
    video_hashtags,
)
from tiktok_pipelines.tagging.taxonomy import RulesTagger, load_taxonomy

__all__ = [
    "DEFAULT_CANDIDATES", "FeatureConfig", "ModelSpec", "RulesTagger", "TagClassifier", "accuracy",
    "evaluate_files", "held_out", "load_taxonomy", "macro_f1", "majority", "normalize_hashtag",
    "normalize_hashtags", "read_captions_csv", "split_captions_csv", "video_hashtags",
]
