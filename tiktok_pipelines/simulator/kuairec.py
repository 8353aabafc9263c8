"""Read the KuaiRec video catalog (real captions, hashtags and category labels) by path."""

from __future__ import annotations

from pathlib import Path

import polars as pl

MISSING = "UNKNOWN"


REQUIRED = ("video_id", "caption", "topic_tag", "first_level_category_name")


def read_captions_csv(path: str | Path) -> pl.DataFrame:
    """A file in KuaiRec's ``video_captions.csv`` format as
    ``video_id, caption, hashtags (list[str]), category (None when missing)``.

    Captions may span lines inside quotes, so the file is parsed as CSV, never split on newlines.
    The manual cover text stands in for an empty caption (both are what the uploader wrote). The
    one reader of the format: the simulator's catalog and the tagger's evaluation both use it.
    """
    df = pl.read_csv(path, infer_schema=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not in the video_captions.csv format (missing columns {missing})")
    if "manual_cover_text" not in df.columns:
        df = df.with_columns(manual_cover_text=pl.lit(None, pl.String))
    tags = (
        pl.col("topic_tag").fill_null("[]").str.strip_chars().str.strip_chars("[]")
        .str.split(",").list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
    )

    def _text(col: str) -> pl.Expr:
        c = pl.col(col).str.strip_chars()
        return pl.when(c.is_null() | (c == "") | (c == MISSING)).then(None).otherwise(c)

    cat = pl.col("first_level_category_name").str.strip_chars()
    return df.select(
        video_id=pl.col("video_id").cast(pl.Int64),
        caption=pl.coalesce(_text("caption"), _text("manual_cover_text"), pl.lit("")),
        hashtags=tags,
        category=pl.when(cat.is_null() | (cat == MISSING) | (cat == "")).then(None).otherwise(cat),
    )


def load_kuairec_videos(kuairec_dir: str | Path) -> pl.DataFrame:
    """``source_video_id, caption, hashtags (list[str]), category (None when missing)``."""
    return (read_captions_csv(Path(kuairec_dir) / "video_captions.csv")
            .rename({"video_id": "source_video_id"}).sort("source_video_id"))
