"""The simulated platform's entities and their latent ground truth.

Entities depend only on (seed, sizes, start date, catalog source), never on the day range being
generated, so a later run into the same output directory sees the same users, creators, videos and
campaigns. Arrays are indexed 0..n-1; the public ids are index + 1.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from tiktok_pipelines.simulator import text
from tiktok_pipelines.simulator.rng import GroupedSampler, rng_for, sample_weighted

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

AD_FORMATS = ("feed", "splash", "dou_plus")
OBJECTIVES = ("conversions", "app_installs", "lead_generation", "followers")
# Conversion type each objective's pixel reports.
OBJECTIVE_CONVERSION = {"conversions": "purchase", "app_installs": "app_install",
                        "lead_generation": "signup", "followers": "follow"}

# Share of a day's activity starting in each UTC hour (evening peak, night trough).
HOURLY_WEIGHTS = np.array([
    2.0, 1.4, 1.0, 0.7, 0.5, 0.5, 0.8, 1.6, 2.4, 2.8, 3.0, 3.3,
    3.8, 3.9, 3.6, 3.6, 3.9, 4.4, 5.2, 6.2, 6.8, 6.6, 5.2, 3.4,
])


def day_start_ms(start_date: dt.date, day_index: int) -> int:
    d = dt.datetime(start_date.year, start_date.month, start_date.day, tzinfo=dt.timezone.utc)
    return int(d.timestamp() * 1000) + day_index * DAY_MS


def diurnal_times(rng: np.random.Generator, n: int, day_start: int) -> np.ndarray:
    """``n`` epoch-ms times within the day, following the hourly activity curve."""
    hours = sample_weighted(rng, np.cumsum(HOURLY_WEIGHTS), n)
    return day_start + hours * HOUR_MS + rng.integers(0, HOUR_MS, n)


@dataclass
class World:
    seed: int
    start_date: dt.date
    start_ms: int
    categories: tuple[str, ...]
    catalog_source: str  # "kuairec" or "generated"
    # users
    n_users: int
    user_age: np.ndarray
    user_gender: np.ndarray
    user_country: np.ndarray
    user_lang: np.ndarray
    user_activity: np.ndarray
    user_registered_ms: np.ndarray
    user_session_rate: np.ndarray
    z_base: np.ndarray  # [users, categories] latent interest logits before any drift
    # creators
    n_creators: int
    creator_user: np.ndarray
    creator_guild: np.ndarray  # -1: individual
    creator_guild_share: np.ndarray  # nan for individuals
    creator_live: np.ndarray
    creator_shop: np.ndarray
    creator_country: np.ndarray
    creator_joined_ms: np.ndarray
    creator_cat: np.ndarray
    creator_followers: np.ndarray
    # videos
    n_videos: int
    video_creator: np.ndarray
    video_cat: np.ndarray  # latent category (always set)
    video_cat_known: np.ndarray  # False where the catalog label is missing
    video_duration_ms: np.ndarray
    video_lang: np.ndarray
    video_published_ms: np.ndarray
    video_quality: np.ndarray
    video_weight: np.ndarray  # serving popularity
    video_caption: list[str]
    video_source: list[str]
    video_source_id: np.ndarray  # -1: none
    tag_names: list[str]
    tag_indptr: np.ndarray  # CSR video -> tag ids
    tag_ids: np.ndarray
    # follow graph (CSR user -> creator indices)
    follow_indptr: np.ndarray
    follow_creators: np.ndarray
    # ads
    n_advertisers: int
    adv_conversion: list[str]
    adv_creator: np.ndarray  # the brand account that sells the product
    adv_target_cat: np.ndarray
    pool_indptr: np.ndarray  # CSR advertiser -> audience user indices
    pool_users: np.ndarray
    n_campaigns: int
    camp_adv: np.ndarray
    camp_format: np.ndarray  # index into AD_FORMATS
    camp_objective: list[str]
    camp_cpm_micros: np.ndarray  # 0 where not CPM-priced
    camp_flat_fee_cents: np.ndarray  # 0 where not flat-fee
    camp_budget_cents: np.ndarray
    camp_target_age: np.ndarray  # -1: any
    camp_promoted_video: np.ndarray  # -1: none
    camp_start_ms: np.ndarray
    camp_end_ms: np.ndarray
    samplers: dict = field(default_factory=dict)
    _interest_cache: tuple[int, np.ndarray] | None = None

    # ------------------------------------------------------------------ latent dynamics

    def interest_logits(self, day: int) -> np.ndarray:
        """Latent interest logits on ``day``: AR(1) drift toward the base plus occasional shifts.

        Day k's innovations come from rng(seed, "drift", k), so any day can be computed from the
        base alone; a cache makes consecutive days O(1) each.
        """
        if self._interest_cache is not None and self._interest_cache[0] <= day:
            d0, z = self._interest_cache
            z = z.copy()
        else:
            d0, z = 0, self.z_base.copy()
        n, c = z.shape
        for k in range(d0 + 1, day + 1):
            r = rng_for(self.seed, "drift", k)
            z = 0.92 * z + 0.08 * self.z_base + r.normal(0.0, 0.22, size=(n, c)).astype(np.float32)
            shifted = np.flatnonzero(r.random(n) < 0.03)  # a new passion, e.g. after a viral video
            z[shifted, r.integers(0, c, len(shifted))] += 3.0
        self._interest_cache = (day, z)
        return z

    def interests(self, day: int) -> np.ndarray:
        z = self.interest_logits(day)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def trending(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """(tag ids trending on ``day``, their engagement boost)."""
        r = rng_for(self.seed, "trending", day)
        n_tags = len(self.tag_names)
        if n_tags == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        freq = np.bincount(self.tag_ids, minlength=n_tags).astype(np.float64)
        k = int(min(n_tags, max(3, n_tags // 40)))
        p = np.sqrt(freq) + 1e-9
        tags = r.choice(n_tags, size=k, replace=False, p=p / p.sum())
        return np.sort(tags), np.round(r.uniform(0.3, 0.9, k), 2)

    def video_trend_boost(self, day: int) -> np.ndarray:
        tags, boost = self.trending(day)
        per_tag = np.zeros(len(self.tag_names) + 1)
        per_tag[tags] = boost
        out = np.zeros(self.n_videos)
        if len(self.tag_ids):
            entry = per_tag[self.tag_ids]
            video_of_entry = np.repeat(np.arange(self.n_videos), np.diff(self.tag_indptr))
            np.maximum.at(out, video_of_entry, entry)
        return out

    # ------------------------------------------------------------------ catalog tables

    def catalog_users(self) -> pl.DataFrame:
        return pl.DataFrame({
            "user_id": np.arange(1, self.n_users + 1, dtype=np.int64),
            "age_band": _gather(text.AGE_BANDS, self.user_age),
            "gender": _gather(text.GENDERS, self.user_gender),
            "country": _gather([c[0] for c in text.COUNTRIES], self.user_country),
            "language": _gather(text.LANGUAGES, self.user_lang),
            "registered_at_ms": self.user_registered_ms,
            "activity_level": _gather(text.ACTIVITY_LEVELS, self.user_activity),
        })

    def catalog_creators(self) -> pl.DataFrame:
        guild = self.creator_guild >= 0
        return pl.DataFrame({
            "creator_id": np.arange(1, self.n_creators + 1, dtype=np.int64),
            "user_id": self.creator_user + 1,
            "creator_type": np.where(guild, "guild", "individual"),
            "guild_id": pl.Series(np.where(guild, self.creator_guild + 1, 0)).set(pl.Series(~guild), None),
            "guild_share": pl.Series(self.creator_guild_share).fill_nan(None),
            "is_live_streamer": self.creator_live,
            "country": _gather([c[0] for c in text.COUNTRIES], self.creator_country),
            "joined_at_ms": self.creator_joined_ms,
            "followers": self.creator_followers,
        })

    def catalog_videos(self) -> pl.DataFrame:
        cats = _gather(self.categories, self.video_cat)
        flat = pl.Series(self.tag_names, dtype=pl.String).gather(self.tag_ids).to_arrow().cast(pa.large_string())
        hashtags = pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(self.tag_indptr, pa.int64()), flat))
        src_id = pl.Series(self.video_source_id)
        return pl.DataFrame({
            "video_id": np.arange(1, self.n_videos + 1, dtype=np.int64),
            "creator_id": self.video_creator + 1,
            "caption": self.video_caption,
            "hashtags": hashtags,
            "category": cats.set(pl.Series(~self.video_cat_known), None),
            "duration_ms": self.video_duration_ms,
            "language": _gather(text.LANGUAGES, self.video_lang),
            "published_at_ms": self.video_published_ms,
            "source": self.video_source,
            "source_video_id": src_id.set(src_id < 0, None),
        })

    def catalog_campaigns(self) -> pl.DataFrame:
        def nullable(a: np.ndarray, missing: np.ndarray) -> pl.Series:
            return pl.Series(a.astype(np.int64)).set(pl.Series(missing), None)

        return pl.DataFrame({
            "campaign_id": np.arange(1, self.n_campaigns + 1, dtype=np.int64),
            "advertiser_id": self.camp_adv + 1,
            "ad_format": _gather(AD_FORMATS, self.camp_format),
            "objective": self.camp_objective,
            "cpm_micros": nullable(self.camp_cpm_micros, self.camp_cpm_micros <= 0),
            "flat_fee_cents": nullable(self.camp_flat_fee_cents, self.camp_flat_fee_cents <= 0),
            "budget_cents": self.camp_budget_cents,
            "target_age_band": _gather(text.AGE_BANDS, np.maximum(self.camp_target_age, 0)).set(
                pl.Series(self.camp_target_age < 0), None),
            "target_category": _gather(self.categories, self.adv_target_cat[self.camp_adv]),
            "promoted_video_id": nullable(self.camp_promoted_video + 1, self.camp_promoted_video < 0),
            "start_ms": self.camp_start_ms,
            "end_ms": self.camp_end_ms,
        })

    def truth_videos(self) -> pl.DataFrame:
        return pl.DataFrame({
            "video_id": np.arange(1, self.n_videos + 1, dtype=np.int64),
            "creator_id": self.video_creator + 1,
            "latent_category": _gather(self.categories, self.video_cat),
            "category_known": self.video_cat_known,
            "quality": self.video_quality.astype(np.float64),
            "serving_weight": self.video_weight,
        })


def _gather(values, idx: np.ndarray) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String).gather(np.asarray(idx, dtype=np.int64))


def _csr(owner: np.ndarray, values: np.ndarray, n_owners: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=n_owners)
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64), values[order]


# ---------------------------------------------------------------------------- building


def _generated_videos(r: np.random.Generator, n: int, categories: tuple[str, ...], creator_lang: np.ndarray,
                      video_creator: np.ndarray, video_cat: np.ndarray):
    """Captions and hashtags for videos without a real catalog row: templates in the creator's
    language with a keyword of the video's category (10% off-topic noise), category hashtags plus
    generic platform tags."""
    captions: list[str] = []
    hashtags: list[list[str]] = []
    langs = creator_lang[video_creator]
    kw_noise = r.random(n) < 0.10
    noise_cat = r.integers(0, len(categories), n)
    pick = r.random((n, 6))
    n_cat_tags = r.integers(1, 4, n)
    n_gen_tags = r.integers(0, 3, n)
    with_tags_in_caption = r.random(n) < 0.7
    for i in range(n):
        lang = text.LANGUAGES[langs[i]]
        cat = categories[noise_cat[i] if kw_noise[i] else video_cat[i]]
        kws = text.CATEGORIES[cat].get(lang) or text.CATEGORIES[cat]["en"]
        kw = kws[int(pick[i, 0] * len(kws))]
        templates = text.CAPTION_TEMPLATES[lang]
        pre, suf = templates[int(pick[i, 1] * len(templates))]
        ctags = text.CATEGORY_HASHTAGS[categories[video_cat[i]]]
        start = int(pick[i, 2] * len(ctags))
        tags = [ctags[(start + j) % len(ctags)] for j in range(min(n_cat_tags[i], len(ctags)))]
        g0 = int(pick[i, 3] * len(text.GENERIC_HASHTAGS))
        tags += [text.GENERIC_HASHTAGS[(g0 + j) % len(text.GENERIC_HASHTAGS)] for j in range(n_gen_tags[i])]
        cap = f"{pre}{kw}{suf}"
        if with_tags_in_caption[i]:
            cap += " " + " ".join("#" + t for t in tags)
        captions.append(cap)
        hashtags.append(tags)
    return captions, hashtags


def build_world(*, seed: int, users: int, videos: int, start_date: dt.date,
                kuairec_dir: str | Path | None = None) -> World:
    """Every entity of the platform and its latent truth, from (seed, sizes, start date, catalog).

    The steps run in this order, each drawing from the one generator ``rng(seed, "world")``: the
    order of the draws is part of the seed's meaning (same arguments, same world, same bytes), so a
    step that draws must never move. Each step returns the ``World`` fields it decides.
    """
    if users < 2 or videos < 1:
        raise ValueError("need at least 2 users and 1 video")
    r = rng_for(seed, "world")
    start_ms = day_start_ms(start_date, 0)
    kr, categories, catalog_source = _catalog_source(seed, videos, kuairec_dir)
    n_cat = len(categories)

    user = _draw_users(r, users, n_cat, start_ms)
    video_cat, video_cat_known, cat_freq = _draw_video_categories(r, kr, videos, categories)
    creator = _draw_creators(r, cat_freq, user, n_videos=videos, start_ms=start_ms)
    # who makes which kind of content: the videos' creators and the follow graph both draw from it
    creator_by_cat = GroupedSampler(creator["creator_cat"], np.sqrt(creator["creator_followers"]), n_cat)
    video = _draw_videos(r, video_cat, creator, creator_by_cat, start_ms)
    texts = _captions_and_hashtags(r, kr, categories, video_cat, creator["creator_lang"], video["video_creator"])
    tags = _hashtag_index(texts.pop("hashtags"))
    follow = _draw_follows(r, user["z_base"], creator_by_cat, n_creators=creator["n_creators"])
    adv, adv_objective, adv_target_age = _draw_advertisers(r, user, n_creators=creator["n_creators"], n_cat=n_cat)
    videos_by_cat = GroupedSampler(video_cat, video["video_weight"], n_cat)
    camp = _draw_campaigns(r, adv_objective, adv_target_age, adv["adv_target_cat"], videos_by_cat, start_ms)

    world = World(
        seed=seed, start_date=start_date, start_ms=start_ms, categories=categories,
        catalog_source=catalog_source, n_users=users, **user,
        **{k: v for k, v in creator.items() if k != "creator_lang"},
        n_videos=videos, video_cat=video_cat, video_cat_known=video_cat_known, **video, **texts, **tags,
        **follow, **adv, **camp,
    )
    world.samplers = {
        "video_by_cat": videos_by_cat,
        "video_by_creator": GroupedSampler(world.video_creator, world.video_weight, world.n_creators),
        "video_global": np.cumsum(world.video_weight),
        "user_activity": np.cumsum(world.user_session_rate),
    }
    return world


def _catalog_source(seed: int, videos: int, kuairec_dir: str | Path | None):
    """(KuaiRec rows or None, the categories, "kuairec"/"generated").

    With KuaiRec, the real rows come first in the catalog (a seed-chosen subset when fewer videos
    are asked for, from its own generator so the world's draws stay the same) and its categories
    are the world's; otherwise the generated categories of ``text.CATEGORIES``."""
    if kuairec_dir is None:
        return None, tuple(text.CATEGORIES), "generated"
    from tiktok_pipelines.simulator.kuairec import load_kuairec_videos

    kr = load_kuairec_videos(kuairec_dir)
    rr = rng_for(seed, "kuairec-pick")
    if videos < kr.height:  # a seed-chosen subset, kept in catalog order
        kr = kr[np.sort(rr.choice(kr.height, videos, replace=False))]
    categories = tuple(sorted(c for c in kr["category"].unique().to_list() if c is not None))
    return kr, categories, "kuairec"


def _draw_users(r: np.random.Generator, n_users: int, n_cat: int, start_ms: int) -> dict:
    """Users' demographics, language, activity and latent base interests (``user_*``, ``z_base``).

    Interests are a demographic prior (age x gender) plus 1-3 personal favourites, so segments
    differ on average and users within one still differ."""
    user_age = sample_weighted(r, np.cumsum(text.AGE_BAND_WEIGHTS), n_users)
    user_gender = sample_weighted(r, np.cumsum(text.GENDER_WEIGHTS), n_users)
    user_country = sample_weighted(r, np.cumsum([c[2] for c in text.COUNTRIES]), n_users)
    country_lang = np.array([text.LANGUAGES.index(c[1]) for c in text.COUNTRIES])
    user_lang = country_lang[user_country]
    english = r.random(n_users) < 0.12  # some users set their app to English
    user_lang = np.where(english, text.LANGUAGES.index("en"), user_lang)
    user_activity = sample_weighted(r, np.cumsum(text.ACTIVITY_WEIGHTS), n_users)
    user_registered_ms = start_ms - r.integers(DAY_MS, 5 * 365 * DAY_MS, n_users)
    user_session_rate = np.array(text.SESSIONS_PER_DAY)[user_activity] * r.lognormal(0, 0.35, n_users)
    prior = r.normal(0, 0.6, size=(len(text.AGE_BANDS), len(text.GENDERS), n_cat))
    z_base = prior[user_age, user_gender].astype(np.float32)
    n_fav = r.integers(1, 4, n_users)
    for j in range(3):
        has = n_fav > j
        rows = np.flatnonzero(has)
        z_base[rows, r.integers(0, n_cat, len(rows))] += r.uniform(1.5, 3.0, len(rows)).astype(np.float32)
    return {"user_age": user_age, "user_gender": user_gender, "user_country": user_country,
            "user_lang": user_lang, "user_activity": user_activity, "user_registered_ms": user_registered_ms,
            "user_session_rate": user_session_rate, "z_base": z_base}


def _draw_video_categories(r: np.random.Generator, kr: pl.DataFrame | None, n_videos: int,
                           categories: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latent category per video, whether the catalog knows it, category frequencies).

    Categories come before creators, who are then drawn to make that kind of content. Real rows
    keep their label (a drawn one where it is missing, marked unknown); generated rows follow the
    real rows' frequencies, or a Dirichlet draw without KuaiRec."""
    n_cat = len(categories)
    n_real = 0 if kr is None else kr.height
    video_cat = np.empty(n_videos, dtype=np.int64)
    video_cat_known = np.ones(n_videos, dtype=bool)
    if kr is not None:
        cat_index = {c: i for i, c in enumerate(categories)}
        raw = kr["category"].to_list()
        known = np.array([c is not None for c in raw])
        video_cat[:n_real] = [cat_index.get(c, 0) if c is not None else 0 for c in raw]
        video_cat[:n_real][~known] = r.integers(0, n_cat, int((~known).sum()))
        video_cat_known[:n_real] = known
        freq = np.bincount(video_cat[:n_real], minlength=n_cat) + 1.0
    else:
        freq = r.dirichlet(np.full(n_cat, 3.0)) * 100
    video_cat[n_real:] = sample_weighted(r, np.cumsum(freq), n_videos - n_real)
    return video_cat, video_cat_known, freq


def _draw_creators(r: np.random.Generator, cat_freq: np.ndarray, user: dict, *, n_videos: int,
                   start_ms: int) -> dict:
    """Creators (one per ~8 videos, each a distinct user): category, audience, guild, live and shop
    flags (``creator_*``; ``creator_lang`` is for the captions, not a World field)."""
    n_users = len(user["user_age"])
    n_creators = int(min(n_users, max(1, n_videos // 8)))
    creator_cat = sample_weighted(r, np.cumsum(cat_freq), n_creators)
    creator_user = r.choice(n_users, n_creators, replace=False)
    creator_followers = np.maximum(1, r.lognormal(6.0, 1.8, n_creators)).astype(np.int64)
    in_guild = r.random(n_creators) < 0.3
    n_guilds = max(1, int(in_guild.sum()) // 12)
    creator_guild = np.where(in_guild, r.integers(0, n_guilds, n_creators), -1)
    guild_share = np.round(r.uniform(0.40, 0.55, n_guilds), 4)
    creator_live = (r.random(n_creators) < 0.25) | in_guild  # guilds sign live streamers
    creator_shop = r.random(n_creators) < 0.3
    creator_joined_ms = np.maximum(user["user_registered_ms"][creator_user],
                                   start_ms - r.integers(DAY_MS, 3 * 365 * DAY_MS, n_creators))
    return {"n_creators": n_creators, "creator_user": creator_user, "creator_guild": creator_guild,
            "creator_guild_share": np.where(in_guild, guild_share[np.maximum(creator_guild, 0)], np.nan),
            "creator_live": creator_live, "creator_shop": creator_shop,
            "creator_country": user["user_country"][creator_user], "creator_joined_ms": creator_joined_ms,
            "creator_cat": creator_cat, "creator_followers": creator_followers,
            "creator_lang": user["user_lang"][creator_user]}


def _draw_videos(r: np.random.Generator, video_cat: np.ndarray, creator: dict, creator_by_cat: GroupedSampler,
                 start_ms: int) -> dict:
    """Each video's creator (85% one of its category), latent quality, duration, publication time
    (never before its creator joined) and serving weight (quality x audience x luck)."""
    n_videos, n_creators = len(video_cat), creator["n_creators"]
    on_topic = r.random(n_videos) < 0.85
    video_creator = np.where(on_topic, creator_by_cat.sample(r, video_cat), r.integers(0, n_creators, n_videos))
    video_quality = r.normal(0, 0.6, n_videos).astype(np.float32)
    video_duration_ms = np.clip(r.lognormal(np.log(22_000), 0.8, n_videos), 3_000, 600_000).astype(np.int64)
    video_published_ms = start_ms - r.integers(HOUR_MS, 365 * DAY_MS, n_videos)
    video_published_ms = np.maximum(video_published_ms, creator["creator_joined_ms"][video_creator])
    video_weight = (np.exp(video_quality) * np.sqrt(creator["creator_followers"][video_creator])
                    * r.lognormal(0, 0.7, n_videos))
    return {"video_creator": video_creator, "video_quality": video_quality, "video_duration_ms": video_duration_ms,
            "video_published_ms": video_published_ms, "video_weight": video_weight}


def _captions_and_hashtags(r: np.random.Generator, kr: pl.DataFrame | None, categories: tuple[str, ...],
                           video_cat: np.ndarray, creator_lang: np.ndarray, video_creator: np.ndarray) -> dict:
    """Caption, hashtags, language and source of every video.

    KuaiRec rows keep their own (Chinese) text; videos beyond them remix a real video of the same
    category. Without KuaiRec the text is generated in the creator's language."""
    n_videos = len(video_cat)
    source_ids = np.full(n_videos, -1, dtype=np.int64)
    if kr is None:
        captions, hashtags = _generated_videos(r, n_videos, categories, creator_lang, video_creator, video_cat)
        return {"video_caption": captions, "hashtags": hashtags, "video_lang": creator_lang[video_creator],
                "video_source": ["generated"] * n_videos, "video_source_id": source_ids}
    n_real = kr.height
    captions = kr["caption"].to_list()
    hashtags = kr["hashtags"].to_list()
    sources = ["kuairec"] * n_real
    source_ids[:n_real] = kr["source_video_id"].to_numpy()
    if n_videos > n_real:
        # Extra videos remix a real video of the same category: its caption and some of its tags.
        by_cat = GroupedSampler(video_cat[:n_real], np.ones(n_real), len(categories))
        tmpl = by_cat.sample(r, video_cat[n_real:])
        prefixes = ("", "续集：", "合拍 ", "再来一次！", "")
        pre = r.integers(0, len(prefixes), len(tmpl))
        for j, t in enumerate(tmpl):
            captions.append(prefixes[pre[j]] + captions[t])
            hashtags.append(list(hashtags[t]))
        sources += ["generated"] * (n_videos - n_real)
    return {"video_caption": captions, "hashtags": hashtags,
            "video_lang": np.full(n_videos, text.LANGUAGES.index("zh"), dtype=np.int64),
            "video_source": sources, "video_source_id": source_ids}


def _hashtag_index(hashtags: list[list[str]]) -> dict:
    """The videos' hashtags as ids in first-seen order: ``tag_names`` and the CSR ``tag_indptr``/``tag_ids``."""
    tag_index: dict[str, int] = {}
    flat: list[int] = []
    indptr = [0]
    for tags in hashtags:
        for t in tags:
            flat.append(tag_index.setdefault(t, len(tag_index)))
        indptr.append(len(flat))
    return {"tag_names": list(tag_index), "tag_indptr": np.array(indptr, dtype=np.int64),
            "tag_ids": np.array(flat, dtype=np.int64)}


def _draw_follows(r: np.random.Generator, z_base: np.ndarray, creator_by_cat: GroupedSampler, *,
                  n_creators: int) -> dict:
    """The follow graph (CSR user -> creators): ~6 follows per user, each of a creator of a category
    drawn from the user's base interests, so following and liking agree."""
    n_users, n_cat = z_base.shape
    n_follow = r.poisson(6, n_users)
    follower_of = np.repeat(np.arange(n_users), n_follow)
    zf = z_base[follower_of]
    cum = np.cumsum(np.exp(zf - zf.max(axis=1, keepdims=True)), axis=1)
    fav_cat = (cum < r.random(len(follower_of))[:, None] * cum[:, -1:]).sum(axis=1)
    followed = creator_by_cat.sample(r, np.minimum(fav_cat, n_cat - 1))
    pair = np.unique(follower_of.astype(np.int64) * n_creators + followed)
    follow_indptr, follow_creators = _csr(pair // n_creators, pair % n_creators, n_users)
    return {"follow_indptr": follow_indptr, "follow_creators": follow_creators}


def _draw_advertisers(r: np.random.Generator, user: dict, *, n_creators: int, n_cat: int):
    """(advertiser fields, objective per advertiser, target age per advertiser or -1).

    Each advertiser targets a category (and half of them an age band) and has an audience pool:
    users who match the targeting are far likelier to be reached again and again."""
    n_users = len(user["user_age"])
    n_adv = int(min(500, max(4, n_users // 400)))
    adv_objective = r.choice(len(OBJECTIVES), n_adv, p=[0.55, 0.2, 0.15, 0.1])
    adv_creator = r.integers(0, n_creators, n_adv)
    adv_target_cat = r.integers(0, n_cat, n_adv)
    adv_target_age = np.where(r.random(n_adv) < 0.5, r.integers(0, len(text.AGE_BANDS), n_adv), -1)
    pool_size = int(np.clip(n_users * 0.04, 20, 20_000))
    pool_owner, pool_members = [], []
    for a in range(n_adv):
        w = np.exp(user["z_base"][:, adv_target_cat[a]]).astype(np.float64)
        if adv_target_age[a] >= 0:
            w = w * np.where(user["user_age"] == adv_target_age[a], 4.0, 1.0)
        members = np.unique(sample_weighted(r, np.cumsum(w), pool_size))
        pool_owner.append(np.full(len(members), a))
        pool_members.append(members)
    pool_indptr, pool_users = _csr(np.concatenate(pool_owner), np.concatenate(pool_members), n_adv)
    fields = {"n_advertisers": n_adv,
              "adv_conversion": [OBJECTIVE_CONVERSION[OBJECTIVES[o]] for o in adv_objective],
              "adv_creator": adv_creator, "adv_target_cat": adv_target_cat,
              "pool_indptr": pool_indptr, "pool_users": pool_users}
    return fields, adv_objective, adv_target_age


def _draw_campaigns(r: np.random.Generator, adv_objective: np.ndarray, adv_target_age: np.ndarray,
                    adv_target_cat: np.ndarray, videos_by_cat: GroupedSampler, start_ms: int) -> dict:
    """Each advertiser's campaigns (``camp_*``): 1-2 CPM feed campaigns, sometimes 1-3 flat-fee
    splash takeovers, and 1-3 DOU+ orders promoting a video of its target category."""
    camp = {k: [] for k in ("adv", "fmt", "cpm", "fee", "budget", "age", "video", "start", "end")}

    def add(a, fmt, cpm, fee, budget, video, start, end):
        for k, v in zip(camp, (a, fmt, cpm, fee, budget, adv_target_age[a], video, start, end)):
            camp[k].append(v)

    for a in range(len(adv_objective)):
        for _ in range(r.integers(1, 3)):
            s = start_ms + int(r.integers(-20, 6)) * DAY_MS
            add(a, 0, int(r.integers(2_000, 12_001)) * 1000, 0, int(r.integers(1_000, 50_001)) * 100, -1,
                s, s + int(r.integers(20, 91)) * DAY_MS)
        # The first splash and DOU+ run from the start, so journeys mix placements from day one.
        if r.random() < 0.6:
            for j in range(r.integers(1, 4)):
                s = start_ms + int(r.integers(-3, 1) if j == 0 else r.integers(-3, 30)) * DAY_MS
                fee = int(r.integers(1_000_100, 6_000_001))  # splash: a flat fee above $10,000
                add(a, 1, 0, fee, fee, -1, s, s + int(r.integers(4, 15)) * DAY_MS)
        for j in range(r.integers(1, 4)):
            s = start_ms + int(r.integers(-3, 1) if j == 0 else r.integers(-5, 20)) * DAY_MS
            fee = int(np.exp(r.uniform(np.log(1_000), np.log(700_000))))  # DOU+: $10 - $7,000
            video = int(videos_by_cat.sample(r, np.array([adv_target_cat[a]]))[0])
            add(a, 2, 0, fee, fee, video, s, s + int(r.integers(4, 15)) * DAY_MS)
    camp_adv = np.array(camp["adv"], dtype=np.int64)

    def ints(k: str) -> np.ndarray:
        return np.array(camp[k], dtype=np.int64)

    return {"n_campaigns": len(camp_adv), "camp_adv": camp_adv, "camp_format": ints("fmt"),
            "camp_objective": [OBJECTIVES[adv_objective[a]] for a in camp_adv], "camp_cpm_micros": ints("cpm"),
            "camp_flat_fee_cents": ints("fee"), "camp_budget_cents": ints("budget"), "camp_target_age": ints("age"),
            "camp_promoted_video": ints("video"), "camp_start_ms": ints("start"), "camp_end_ms": ints("end")}
