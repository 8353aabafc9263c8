"""One day of platform activity, generated vectorised from (seed, day).

Three independent parts, each with its own random stream so any day (or any part of it) can be
regenerated alone: the feed (impressions, views, interactions, commerce through videos), ads
(impressions, clicks and conversions that land minutes to days later, plus the orders those
purchases create) and live streams (gifts and live-shopping orders).

Every frame has the stream's schema columns in schema order plus ``_wts``: the time the event
really happened (``ts_ms`` equals it for clean records; dirty ones may lie about it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tiktok_pipelines import schemas
from tiktok_pipelines.simulator import text
from tiktok_pipelines.simulator.observed import ENGAGED_WATCH_RATIO, video_counters
from tiktok_pipelines.simulator.rng import rng_for, sample_weighted, sigmoid
from tiktok_pipelines.simulator.world import (
    DAY_MS,
    HOUR_MS,
    World,
    day_start_ms,
    diurnal_times,
)

# Shares of a day's events (events_per_day) each part aims for.
VIEW_SHARE = 0.40  # impressions come on top (~1.3 per view), interactions ~4% of views
AD_IMPRESSION_SHARE = 0.036
GIFT_SHARE = 0.012
MEAN_SESSION_VIEWS = 12
PAGE_SIZE = 8
MAX_CONVERSION_DELAY_MS = 3 * DAY_MS - 1
PARTS = ("feed", "ads", "live")
# Days of ads generated before a run's first day, so conversions they cause still arrive.
AD_LOOKBACK_DAYS = 3

FEED_SURFACES = ("foryou", "following", "search", "profile", "share_link")
FEED_SURFACE_WEIGHTS = (0.78, 0.09, 0.05, 0.03, 0.05)
CS = {name: i for i, name in enumerate(schemas.CANDIDATE_SOURCES)}
FORYOU_SOURCES = ((CS["personal"], 0.50), (CS["trending"], 0.15), (CS["explore"], 0.15),
                  (CS["following"], 0.10), (CS["promoted"], 0.10))
PL = {name: i for i, name in enumerate(schemas.AD_PLACEMENTS)}
CLICK_BASE = {"feed": 0.012, "splash": 0.02, "dou_plus": 0.015, "search": 0.03}


def date_tag(start_date: dt.date, day: int) -> str:
    return (start_date + dt.timedelta(days=day)).strftime("%Y%m%d")


def _ids(prefix: str, idx: np.ndarray) -> pl.Series:
    return pl.select(pl.concat_str([pl.lit(prefix), pl.Series(np.asarray(idx, dtype=np.int64)).cast(pl.String)])).to_series()


def _ids_on_day(start_date: dt.date, prefix: str, ts: np.ndarray, middle: str, idx: np.ndarray) -> pl.Series:
    """``<prefix><YYYYMMDD of ts><middle><idx>``: ids named by the day each event happens.

    For events that happen days after the day whose generator made them (the conversions of
    that day's ads): every run regenerates the ads of the days before it, and the regenerated
    frame depends on the run's own arguments (``events_per_day``), so an index into it alone
    could name another event than the one an earlier run wrote under that id. Only the run that simulates a day writes the events that happen on it (runs never
    overlap), so a day in the id keeps it unique across the runs of a world.
    """
    day = (np.asarray(ts, dtype=np.int64) - day_start_ms(start_date, 0)) // DAY_MS
    days, inv = np.unique(day, return_inverse=True)
    tags = _strs([date_tag(start_date, int(d)) for d in days], inv)
    return pl.select(pl.concat_str([pl.lit(prefix), tags, pl.lit(middle),
                                    pl.Series(np.asarray(idx, dtype=np.int64)).cast(pl.String)])).to_series()


def _strs(values, idx: np.ndarray) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String).gather(np.asarray(idx, dtype=np.int64))


def _frame(stream: str, cols: dict, wts: np.ndarray) -> pl.DataFrame:
    """Columns in schema order (missing optional ones as nulls) plus ``_wts``.

    A JSON-object field may be given flat, as ``<field>.<key>`` columns (see ``serial_columns``).
    """
    n = len(wts)
    out = {}
    for f in schemas.STREAMS[stream].fields:
        flat = [c for c in cols if c.startswith(f.name + ".")]
        if flat:
            out.update({c: cols[c] for c in flat})
        elif f.name in cols:
            out[f.name] = cols[f.name]
        else:
            dtype = {schemas.STRING: pl.String, schemas.INT64: pl.Int64, schemas.FLOAT64: pl.Float64,
                     schemas.BOOL: pl.Boolean}.get(f.type, pl.String)
            out[f.name] = pl.Series(f.name, [None] * n, dtype=dtype)
    df = pl.DataFrame(out)
    casts = {f.name: pl.Int64 for f in schemas.STREAMS[stream].fields
             if f.type == schemas.INT64 and df.schema[f.name] != pl.Int64}
    wts = np.asarray(wts, dtype=np.int64)
    df = df.with_columns([pl.col(c).cast(t) for c, t in casts.items()]).with_columns(_wts=pl.Series(wts))
    if len(wts) > 1 and not (np.diff(wts) >= 0).all():  # the writer needs time order
        df = df.sort("_wts", maintain_order=True)
    return df


def serial_columns(stream: str, columns: list[str]) -> list[pl.Expr]:
    """The stream's fields, in schema order, as expressions over a frame from ``_frame``."""
    exprs = []
    for f in schemas.STREAMS[stream].fields:
        flat = [c for c in columns if c.startswith(f.name + ".")]
        if flat:
            exprs.append(pl.struct([pl.col(c).alias(c[len(f.name) + 1:]) for c in flat]).alias(f.name))
        else:
            exprs.append(pl.col(f.name))
    return exprs


def _pick_category(r: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    cum = np.cumsum(probs, axis=1, dtype=np.float32)
    u = r.random(len(probs), dtype=np.float32)[:, None] * cum[:, -1:]
    return np.minimum((cum < u).sum(axis=1), probs.shape[1] - 1)


def _product_price_cents(product_id: np.ndarray) -> np.ndarray:
    return 299 + (product_id * 7919) % 14_700


def _comment_texts(r: np.random.Generator, world: World, lang: np.ndarray, cat: np.ndarray) -> pl.Series:
    pre, suf, has_kw, t_off, t_cnt = [], [], [], [], []
    for lg in text.LANGUAGES:
        t_off.append(len(pre))
        for p, s in text.COMMENT_TEMPLATES[lg]:
            pre.append(p)
            suf.append(s)
            has_kw.append(bool(s) or p.endswith(" ") or p == "")
        t_cnt.append(len(text.COMMENT_TEMPLATES[lg]))
    # keywords per (category, language); KuaiRec's category names are their own keyword
    kws, k_off, k_cnt = [], [], []
    for c in world.categories:
        for lg in text.LANGUAGES:
            entry = text.CATEGORIES.get(c)
            words = (entry.get(lg) or entry["en"]) if entry else (c,)
            k_off.append(len(kws))
            k_cnt.append(len(words))
            kws.extend(words)
    n = len(lang)
    t = np.array(t_off)[lang] + (r.random(n) * np.array(t_cnt)[lang]).astype(np.int64)
    kslot = cat * len(text.LANGUAGES) + lang
    k = np.array(k_off)[kslot] + (r.random(n) * np.array(k_cnt)[kslot]).astype(np.int64)
    kw = pl.when(pl.Series(has_kw).gather(t)).then(_strs(kws, k)).otherwise(pl.lit(""))
    return pl.select(pl.concat_str([_strs(pre, t), kw, _strs(suf, t)])).to_series()


# ------------------------------------------------------------------------------------ feed


# A recommender the simulated users can be served by (closing the loop): given the ids of the
# users with For-You sessions on ``day``, it returns video ids int64[len(users), K], best first
# (0 or negative = no recommendation: the simulator's own choice stays).
Recommender = Callable[[np.ndarray, int], np.ndarray]


@dataclass(eq=False)
class _FeedDay:
    """One day of the feed as the steps of ``gen_feed`` build it up, one array per slot.

    A slot is one position of a served page (an impression); it is *viewed* when the session got
    that far. Each step fills the fields under its heading and draws from ``r`` in a fixed order.
    """

    world: World
    day: int
    r: np.random.Generator
    d0: int  # the day's first and one-past-last epoch ms
    d1: int
    tag: str  # the date in event ids
    interests: np.ndarray  # [users, categories] today's latent interests
    trend: np.ndarray  # per video: today's trending boost
    # _draw_sessions
    n_sess: int = 0
    slot_start: np.ndarray = field(init=False)  # per session: its first slot
    sess: np.ndarray = field(init=False)  # per slot: its session
    k: np.ndarray = field(init=False)  # per slot: its position in the session
    viewed: np.ndarray = field(init=False)
    u: np.ndarray = field(init=False)  # per slot: the user index
    sk: np.ndarray = field(init=False)  # per slot: the surface (index into FEED_SURFACES)
    # _choose_videos
    src: np.ndarray = field(init=False)  # per slot: candidate source (CS)
    vid: np.ndarray = field(init=False)  # per slot: video index
    creator_idx: np.ndarray = field(init=False)  # per slot: the video's creator index
    # _react
    vcat: np.ndarray = field(init=False)
    signal: np.ndarray = field(init=False)  # what drives the reactions, without noise
    e: np.ndarray = field(init=False)  # signal plus this play's noise
    skip: np.ndarray = field(init=False)
    dur: np.ndarray = field(init=False)
    watch: np.ndarray = field(init=False)
    # _time_plays
    item_start: np.ndarray = field(init=False)
    view_ts: np.ndarray = field(init=False)
    page_first: np.ndarray = field(init=False)  # per slot: the first slot of its page (the request)
    imp_ts: np.ndarray = field(init=False)

    @property
    def n(self) -> int:
        return len(self.sess)



def gen_feed(world: World, day: int, events_per_day: int,
             recommender: Recommender | None = None) -> dict[str, pl.DataFrame]:
    """The feed's streams for ``day``: impressions, views, interactions and orders through videos.

    Sessions are drawn first, then what each slot shows, how the user reacts, and when; the
    frames are cut from those arrays. Every step draws from rng(seed, "feed", day) in this order,
    which is part of the seed's meaning (same arguments, same bytes).
    """
    d0 = day_start_ms(world.start_date, day)
    fd = _FeedDay(world=world, day=day, r=rng_for(world.seed, "feed", day), d0=d0, d1=d0 + DAY_MS,
                  tag=date_tag(world.start_date, day), interests=world.interests(day),
                  trend=world.video_trend_boost(day))
    _draw_sessions(fd, events_per_day)
    _choose_videos(fd, recommender)
    _react(fd)
    _time_plays(fd)
    model_version, session_ids = _session_labels(fd)
    im, imp_cols = _impression_columns(fd, model_version, session_ids)
    frames = {"views": _views_frame(fd, session_ids)}
    frames["interactions"], rows, etype, its = _interactions(fd)
    imp_cols["served_features.creator_followers"] = _followers_seen(fd, im, rows, etype, its)
    frames["impressions"] = _frame("impressions", imp_cols, fd.imp_ts[im])
    frames["orders"] = _feed_orders(fd)
    return frames


def _draw_sessions(fd: _FeedDay, events_per_day: int) -> None:
    """Sessions (users by activity, a surface each) and their slots: whole pages of PAGE_SIZE, of
    which the first ``n_views`` are played; a shared link plays one video and serves no page."""
    r = fd.r
    n_sess = max(1, round(VIEW_SHARE * events_per_day / MEAN_SESSION_VIEWS))
    sess_user = sample_weighted(r, fd.world.samplers["user_activity"], n_sess)
    kind = sample_weighted(r, np.cumsum(FEED_SURFACE_WEIGHTS), n_sess)
    share_link = kind == 4
    n_views = np.minimum(r.geometric(1 / MEAN_SESSION_VIEWS, n_sess), 200)
    n_views[share_link] = 1
    n_slots = np.where(share_link, 1, -(-n_views // PAGE_SIZE) * PAGE_SIZE)
    fd.n_sess = n_sess
    fd.slot_start = np.concatenate(([0], np.cumsum(n_slots)[:-1]))
    fd.sess = np.repeat(np.arange(n_sess), n_slots)
    fd.k = np.arange(int(n_slots.sum())) - fd.slot_start[fd.sess]
    fd.viewed = fd.k < n_views[fd.sess]
    fd.u = sess_user[fd.sess]
    fd.sk = kind[fd.sess]


def _choose_videos(fd: _FeedDay, recommender: Recommender | None) -> None:
    """The candidate source and video of every slot, source by source; a slot whose source has
    nothing to offer (no follows, no trend, no DOU+ order) falls back to explore. A
    ``recommender`` replaces the For-You personal picks after they were drawn (see
    ``_serve_recommendations``)."""
    r, world, n, sk, u = fd.r, fd.world, fd.n, fd.sk, fd.u
    src = np.full(n, CS["explore"], dtype=np.int64)
    fy = np.flatnonzero(sk == 0)
    src[fy] = np.array([s for s, _ in FORYOU_SOURCES])[
        sample_weighted(r, np.cumsum([w for _, w in FORYOU_SOURCES]), len(fy))]
    src[sk == 1] = CS["following"]
    src[(sk == 2) | (sk == 3)] = CS["personal"]
    vid = np.empty(n, dtype=np.int64)
    by_cat = world.samplers["video_by_cat"]
    by_creator = world.samplers["video_by_creator"]

    def explore(m: np.ndarray) -> None:
        src[m[sk[m] != 4]] = CS["explore"]
        vid[m] = sample_weighted(r, world.samplers["video_global"], len(m))

    # following: a video of a creator the user follows (explore when they follow nobody)
    m = np.flatnonzero(src == CS["following"])
    fcnt = np.diff(world.follow_indptr)[u[m]]
    has = fcnt > 0
    mf = m[has]
    creator = world.follow_creators[world.follow_indptr[u[mf]] + (r.random(len(mf)) * fcnt[has]).astype(np.int64)]
    vid[mf] = by_creator.sample(r, creator)
    explore(m[~has])
    # personal (including search): a video of a category drawn from today's interests
    m = np.flatnonzero((src == CS["personal"]) & (sk != 3))
    vid[m] = by_cat.sample(r, _pick_category(r, fd.interests[u[m]]))
    if recommender is not None:
        _serve_recommendations(world, fd.day, recommender, np.flatnonzero((src == CS["personal"]) & (sk == 0)),
                               u, fd.sess, vid)
    # profile: every slot of the session shows one creator's videos
    m = np.flatnonzero(sk == 3)
    prof_creator = world.video_creator[sample_weighted(r, world.samplers["video_global"], fd.n_sess)]
    vid[m] = by_creator.sample(r, prof_creator[fd.sess[m]])
    # trending: videos carrying one of today's trending hashtags
    m = np.flatnonzero(src == CS["trending"])
    tv = np.flatnonzero(fd.trend > 0)
    if len(tv):
        vid[m] = tv[sample_weighted(r, np.cumsum(world.video_weight[tv] * (1 + fd.trend[tv])), len(m))]
    else:
        explore(m)
    # promoted: DOU+ orders running today
    m = np.flatnonzero(src == CS["promoted"])
    active = np.flatnonzero((world.camp_format == 2) & (world.camp_start_ms < fd.d1) & (world.camp_end_ms > fd.d0))
    if len(active):
        fees = np.sqrt(world.camp_flat_fee_cents[active])
        vid[m] = world.camp_promoted_video[active[sample_weighted(r, np.cumsum(fees), len(m))]]
    else:
        explore(m)
    explore(np.flatnonzero((src == CS["explore"]) & (sk != 3)))
    fd.src, fd.vid, fd.creator_idx = src, vid, world.video_creator[vid]


def _react(fd: _FeedDay) -> None:
    """The user's reaction to each slot, driven by latent interest, quality, trends and language:
    a noisy ``e`` decides skips and the watched share (above 1: rewatched, looped)."""
    r, world, n, u, vid = fd.r, fd.world, fd.n, fd.u, fd.vid
    fd.vcat = world.video_cat[vid]
    affinity = np.clip(np.log(fd.interests[u, fd.vcat] * len(world.categories) + 1e-6), -3, 3)
    lang_match = world.user_lang[u] == world.video_lang[vid]
    fd.signal = (0.9 * affinity + world.video_quality[vid] + fd.trend[vid] + 0.3 * lang_match
                 + 0.3 * (fd.src == CS["following"]))
    fd.e = fd.signal + r.normal(0, 0.7, n)
    fd.skip = r.random(n) < sigmoid(-0.8 - 1.1 * fd.e)
    fd.dur = world.video_duration_ms[vid]
    frac = sigmoid(0.2 + 0.9 * fd.e + r.normal(0, 0.6, n)) * 1.5  # > 1: rewatched (looped)
    fd.watch = np.where(fd.skip, r.integers(150, 1800, n), frac * fd.dur).astype(np.int64)


def _time_plays(fd: _FeedDay) -> None:
    """When things happen: a session starts on the diurnal curve (kept inside the day) and plays
    its items back to back; a page's impressions are logged just before its first item plays."""
    r, sess, slot_start = fd.r, fd.sess, fd.slot_start
    dwell = np.where(fd.viewed, fd.watch + r.integers(300, 2500, fd.n), 0)
    cs = np.cumsum(dwell)
    sess_before = (cs - dwell)[slot_start]
    offset = cs - dwell - sess_before[sess]
    sess_dur = np.add.reduceat(dwell, slot_start)
    st = diurnal_times(r, fd.n_sess, fd.d0)
    st = np.maximum(np.minimum(st, fd.d1 - 1_000 - sess_dur), fd.d0 + 1_000)
    fd.item_start = st[sess] + offset
    fd.view_ts = np.minimum(fd.item_start + fd.watch, fd.d1 - 1)
    fd.page_first = slot_start[sess] + (fd.k // PAGE_SIZE) * PAGE_SIZE
    fd.imp_ts = fd.item_start[fd.page_first] - 150 + fd.k % PAGE_SIZE


def _session_labels(fd: _FeedDay) -> tuple[np.ndarray, pl.Series]:
    """(ranker version per session, with a 5% canary of the next version; session ids)."""
    ver = 40 + fd.day // 3
    canary = fd.r.random(fd.n_sess) < 0.05
    model_version = np.where(canary, f"ranker-v{ver + 1}-canary", f"ranker-v{ver}")
    return model_version, _ids(f"ses{fd.tag}-", np.arange(fd.n_sess))


def _impression_columns(fd: _FeedDay, model_version: np.ndarray, session_ids: pl.Series) -> tuple[np.ndarray, dict]:
    """(impression slots in time order, their columns): the serve-time feature log, holding only
    what the server knew when serving. ``creator_followers`` is left to ``_followers_seen``."""
    world, tag, u, vid, k = fd.world, fd.tag, fd.u, fd.vid, fd.k
    im = np.flatnonzero(fd.sk != 4)
    im = im[np.argsort(fd.imp_ts[im], kind="stable")]  # time order, so the frame needs no sort
    iv = vid[im]
    age_h = (fd.imp_ts[im] - world.video_published_ms[iv]) / HOUR_MS
    # Counters of today's plays before each impression: what a serving stack has observed, never
    # the latent quality or trend that drive the reactions (simulator/observed.py).
    vw = np.flatnonzero(fd.viewed)
    seen = video_counters(vid[vw], fd.view_ts[vw], fd.watch[vw] >= ENGAGED_WATCH_RATIO * fd.dur[vw], iv,
                          fd.imp_ts[im])
    vcat_known = world.video_cat_known[iv]
    # kept flat (cheap to sort and gather); assembled into the JSON object when serialised
    served = {f"served_features.{name}": v for name, v in {
        "age_band": _strs(text.AGE_BANDS, world.user_age[u[im]]),
        "country": _strs([c[0] for c in text.COUNTRIES], world.user_country[u[im]]),
        "language": _strs(text.LANGUAGES, world.user_lang[u[im]]),
        "category": _strs(world.categories, fd.vcat[im]).set(pl.Series(~vcat_known), None),
        "video_duration_ms": fd.dur[im],
        "video_age_h": np.round(age_h, 1),
        "creator_followers": None,  # counted once today's follows are drawn
        "video_ctr": np.round(seen.ctr, 4),
        "trending_tag": seen.trending,
        "follows_creator": fd.src[im] == CS["following"],
    }.items()}
    score = np.round(sigmoid(fd.signal[im] - 1.5 + fd.r.normal(0, 0.8, len(im))), 5)
    return im, {
        "event_id": _ids(f"imp{tag}-", im),
        "ts_ms": fd.imp_ts[im],
        "user_id": u[im] + 1,
        "request_id": _ids(f"req{tag}-", fd.page_first[im]),  # one id per served page
        "session_id": session_ids.gather(fd.sess[im]),
        "video_id": iv + 1,
        "creator_id": fd.creator_idx[im] + 1,
        "position": k[im] % PAGE_SIZE,
        "surface": _strs(FEED_SURFACES, fd.sk[im]),
        "candidate_source": _strs(schemas.CANDIDATE_SOURCES, fd.src[im]),
        "model_version": pl.Series(model_version).gather(fd.sess[im]),
        "score": score,
        **served,
    }


def _views_frame(fd: _FeedDay, session_ids: pl.Series) -> pl.DataFrame:
    """Every play; feed plays carry the impression's request_id (a shared link has none)."""
    tag, vw = fd.tag, np.flatnonzero(fd.viewed)
    vw = vw[np.argsort(fd.view_ts[vw], kind="stable")]
    req = _ids(f"req{tag}-", fd.page_first[vw])
    return _frame("views", {
        "event_id": _ids(f"view{tag}-", vw),
        "ts_ms": fd.view_ts[vw],
        "user_id": fd.u[vw] + 1,
        "session_id": session_ids.gather(fd.sess[vw]),
        "request_id": req.set(pl.Series(fd.sk[vw] == 4), None),
        "video_id": fd.vid[vw] + 1,
        "creator_id": fd.creator_idx[vw] + 1,
        "watch_time_ms": fd.watch[vw],
        "video_duration_ms": fd.dur[vw],
        "traffic_source": _strs(FEED_SURFACES, fd.sk[vw]),
    }, fd.view_ts[vw])


def _interactions(fd: _FeedDay) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """(interactions frame, their slots, type index, time): likes, shares, comments and follows of
    the plays not skipped, likelier the better ``e``, each during the play."""
    r, n, e, tag, u = fd.r, fd.n, fd.e, fd.tag, fd.u
    base = fd.viewed & ~fd.skip
    types = (
        ("like", base & (r.random(n) < sigmoid(-4.0 + 1.2 * e))),
        ("share", base & (r.random(n) < sigmoid(-6.0 + 1.1 * e))),
        ("comment", base & (r.random(n) < sigmoid(-6.2 + 1.0 * e))),
        ("follow", base & (fd.src != CS["following"]) & (r.random(n) < sigmoid(-6.8 + 1.0 * e))),
    )
    rows = np.concatenate([np.flatnonzero(mask) for _, mask in types])
    etype = np.concatenate([np.full(int(mask.sum()), schemas.INTERACTION_TYPES.index(t)) for t, mask in types])
    order = np.argsort(rows, kind="stable")
    rows, etype = rows[order], etype[order]
    its = np.minimum(fd.item_start[rows] + (r.uniform(0.3, 1.0, len(rows)) * fd.watch[rows]).astype(np.int64) + 1,
                     fd.d1 - 1)
    is_comment = etype == schemas.INTERACTION_TYPES.index("comment")
    is_share = etype == schemas.INTERACTION_TYPES.index("share")
    comments = _comment_texts(r, fd.world, fd.world.user_lang[u[rows]], fd.vcat[rows])
    channels = _strs(schemas.SHARE_CHANNELS, sample_weighted(r, np.cumsum([0.6, 0.3, 0.1]), len(rows)))
    frame = _frame("interactions", {
        "event_id": _ids(f"int{tag}-", np.arange(len(rows))),
        "ts_ms": its,
        "user_id": u[rows] + 1,
        "event_type": _strs(schemas.INTERACTION_TYPES, etype),
        "video_id": fd.vid[rows] + 1,
        "creator_id": fd.creator_idx[rows] + 1,
        "comment_text": comments.set(pl.Series(~is_comment), None),
        "share_channel": channels.set(pl.Series(~is_share), None),
        # an action on a served feed item carries the impression's request, as clients log it
        "request_id": _ids(f"req{tag}-", fd.page_first[rows]).set(pl.Series(fd.sk[rows] == 4), None),
    }, its)
    return frame, rows, etype, its


def _followers_seen(fd: _FeedDay, im: np.ndarray, rows: np.ndarray, etype: np.ndarray,
                    its: np.ndarray) -> np.ndarray:
    """Followers as a server counts them at each impression: the catalog's count (the platform's
    creator table when it was exported) plus today's follows of the creator before the
    impression, never a latent value."""
    creator_idx = fd.creator_idx
    fol = etype == schemas.INTERACTION_TYPES.index("follow")
    follows_before = video_counters(creator_idx[rows[fol]], its[fol], np.zeros(int(fol.sum()), bool),
                                    creator_idx[im], fd.imp_ts[im]).plays_before
    return fd.world.creator_followers[creator_idx[im]] + follows_before


def _feed_orders(fd: _FeedDay) -> pl.DataFrame:
    """Orders through a shop creator's video (a few minutes after the play) and through
    showcases (at any time of the day, with no video)."""
    r, world, u = fd.r, fd.world, fd.u
    creator_idx = fd.creator_idx
    bought = r.random(fd.n) < 0.008 * sigmoid(fd.e)
    om = np.flatnonzero(fd.viewed & ~fd.skip & world.creator_shop[creator_idx] & bought)
    n_show = int(r.poisson(0.3 * len(om) + 1))
    shop_creators = np.flatnonzero(world.creator_shop)
    if len(shop_creators) == 0:
        om, n_show = om[:0], 0
    o_ts = np.concatenate([np.minimum(fd.view_ts[om] + r.integers(10_000, 600_000, len(om)), fd.d1 - 1),
                           diurnal_times(r, n_show, fd.d0)])
    o_user = np.concatenate([u[om], sample_weighted(r, world.samplers["user_activity"], n_show)])
    o_creator = np.concatenate([creator_idx[om], shop_creators[r.integers(0, max(1, len(shop_creators)), n_show)]
                                if n_show else np.zeros(0, np.int64)])
    o_video = pl.Series(np.concatenate([fd.vid[om] + 1, np.zeros(n_show, np.int64)])).set(
        pl.Series(np.arange(len(o_ts)) >= len(om)), None)
    return _orders(r, fd.tag, "v", o_ts, o_user, o_creator, video_id=o_video,
                   source=np.where(np.arange(len(o_ts)) < len(om), "video", "showcase"))


def _orders(r, tag: str, part: str, ts, user_idx, creator_idx, *, source, video_id=None, stream_id=None,
            campaign_id=None, amount_cents=None, quantity=None, keys: pl.Series | None = None) -> pl.DataFrame:
    """Orders; ``keys`` (default ``<tag>-<part><i>``) name them: event ``ord<key>``, order ``o<key>``."""
    n = len(ts)
    product = (creator_idx + 1) * 1000 + r.integers(0, 20, n)
    if quantity is None:
        quantity = np.minimum(r.geometric(0.7, n), 10)
    if amount_cents is None:
        amount_cents = _product_price_cents(product) * quantity
    return _frame("orders", {
        "event_id": _ids(f"ord{tag}-{part}", np.arange(n)) if keys is None else "ord" + keys,
        "ts_ms": ts,
        "user_id": np.asarray(user_idx) + 1,
        "order_id": _ids(f"o{tag}{part}", np.arange(n)) if keys is None else "o" + keys,
        "creator_id": np.asarray(creator_idx) + 1,
        "video_id": video_id if video_id is not None else pl.Series([None] * n, dtype=pl.Int64),
        "stream_id": stream_id if stream_id is not None else pl.Series([None] * n, dtype=pl.String),
        "campaign_id": campaign_id if campaign_id is not None else pl.Series([None] * n, dtype=pl.Int64),
        "product_id": product,
        "quantity": quantity,
        "amount_cents": amount_cents,
        "currency": pl.Series(["USD"] * n, dtype=pl.String),
        "source": pl.Series(np.asarray(source, dtype=object).tolist() if n else [], dtype=pl.String),
    }, ts)


# ------------------------------------------------------------------------------------- ads


def _serve_recommendations(world: World, day: int, recommender: Recommender, m: np.ndarray,
                           u: np.ndarray, sess: np.ndarray, vid: np.ndarray) -> None:
    """Replace the For-You personal slots ``m`` with the recommender's picks, in place.

    The session's j-th personal slot gets the user's j-th recommendation. The slots' own
    choice was already drawn, so the random stream, and with it every session, timing and
    reaction noise, is the same whichever recommender serves: arms of an experiment differ
    only in what was served."""
    if not len(m):
        return
    users, inv = np.unique(u[m], return_inverse=True)
    rec = np.asarray(recommender(users + 1, day), dtype=np.int64)
    if rec.ndim != 2 or rec.shape[0] != len(users) or rec.shape[1] == 0:
        raise ValueError(f"recommender returned shape {rec.shape}, expected ({len(users)}, K)")
    first = np.concatenate(([0], np.flatnonzero(np.diff(sess[m])) + 1))
    j = np.arange(len(m)) - np.repeat(first, np.diff(np.append(first, len(m))))
    picked = rec[inv, j % rec.shape[1]]
    ok = (picked >= 1) & (picked <= world.n_videos)
    vid[m[ok]] = picked[ok] - 1


def gen_ads(world: World, day: int, events_per_day: int) -> dict[str, pl.DataFrame]:
    """Ad impressions and clicks on ``day``; conversions they cause (up to 3 days later), and the
    orders of the purchases among them. Steps draw from rng(seed, "ads", day) in this order."""
    r = rng_for(world.seed, "ads", day)
    d0 = day_start_ms(world.start_date, day)
    tag = date_tag(world.start_date, day)
    interests = world.interests(day)
    imp = _ad_impressions(r, world, d0, events_per_day, interests)
    conv = _ad_conversions(r, world, imp, interests)
    ad_events = _ad_events_frame(world, tag, imp, conv)
    # purchases through an ad are orders too, sold by the advertiser's brand creator
    pi = np.flatnonzero(conv["purchase"])
    orders = _orders(r, tag, "a", conv["ts"][pi], conv["user"][pi], world.adv_creator[conv["adv"][pi]],
                     source=["ad"] * len(pi), campaign_id=pl.Series(conv["camp"][pi] + 1, dtype=pl.Int64),
                     amount_cents=conv["value"][pi], quantity=np.ones(len(pi), np.int64),
                     keys=_ids_on_day(world.start_date, "", conv["ts"][pi], f"-a{tag}-", pi))
    return {"ad_events": ad_events, "orders": orders}


def _ad_impressions(r: np.random.Generator, world: World, d0: int, events_per_day: int,
                    interests: np.ndarray) -> dict[str, np.ndarray]:
    """The day's ad impressions and which were clicked: campaigns running today by daily budget,
    users mostly from the advertiser's audience pool, a click likelier the more the user likes
    the advertiser's category."""
    d1 = d0 + DAY_MS
    active = (world.camp_start_ms < d1) & (world.camp_end_ms > d0)
    n_imp = round(AD_IMPRESSION_SHARE * events_per_day) if active.any() else 0
    days_running = np.maximum(1, (world.camp_end_ms - world.camp_start_ms) // DAY_MS)
    weight = np.sqrt(world.camp_budget_cents / days_running) * active
    c = sample_weighted(r, np.cumsum(weight), n_imp) if n_imp else np.zeros(0, np.int64)
    a = world.camp_adv[c]
    pool_n = np.diff(world.pool_indptr)[a]
    in_pool = (r.random(n_imp) < 0.8) & (pool_n > 0)
    user = sample_weighted(r, world.samplers["user_activity"], n_imp)
    pick = world.pool_indptr[a] + (r.random(n_imp) * pool_n).astype(np.int64)
    user[in_pool] = world.pool_users[pick[in_pool]]
    ts = diurnal_times(r, n_imp, d0)
    fmt = world.camp_format[c]
    placement = np.where(fmt == 1, PL["splash"], np.where(fmt == 2, PL["dou_plus"], PL["feed"]))
    placement[(fmt == 0) & (r.random(n_imp) < 0.15)] = PL["search"]
    watch = np.where(placement == PL["splash"], r.integers(1_000, 5_001, n_imp),
                     np.minimum(r.lognormal(np.log(4_000), 0.9, n_imp), 60_000)).astype(np.int64)
    affinity = np.clip(np.log(interests[user, world.adv_target_cat[a]] * len(world.categories) + 1e-6), -3, 3)
    base_ctr = np.array([CLICK_BASE[p] for p in schemas.AD_PLACEMENTS])[placement]
    click = r.random(n_imp) < np.minimum(base_ctr * np.exp(0.6 * affinity), 0.5)
    ad_group = (c + 1) * 10 + r.integers(1, 4, n_imp)
    creative = (c + 1) * 100 + r.integers(1, 6, n_imp)
    ci = np.flatnonzero(click)
    click_ts = np.minimum(ts[ci] + r.integers(1_000, 30_000, len(ci)), d1 - 1)
    return {"camp": c, "adv": a, "user": user, "ts": ts, "placement": placement,
            "cost": np.where(fmt == 0, world.camp_cpm_micros[c] // 1000, -1), "watch": watch,
            "ad_group": ad_group, "creative": creative, "ci": ci, "click_ts": click_ts}


def _ad_conversions(r: np.random.Generator, world: World, imp: dict, interests: np.ndarray) -> dict[str, np.ndarray]:
    """Conversions: per (advertiser, user) touched today, from its views and clicks (each adds a
    chance, clicks more, scaled by affinity); one lands after a lognormal delay of up to 3 days,
    reported with the campaign of the last touch."""
    user, adv, ts, camp, ci = imp["user"], imp["adv"], imp["ts"], imp["camp"], imp["ci"]
    n_cat = len(world.categories)
    t_ts = np.concatenate([ts, imp["click_ts"]])
    t_click = np.concatenate([np.zeros(len(ts), bool), np.ones(len(ci), bool)])
    t_camp = np.concatenate([camp, camp[ci]])
    key = np.concatenate([adv, adv[ci]]) * world.n_users + np.concatenate([user, user[ci]])
    order = np.lexsort((t_ts, key))
    key_s = key[order]
    last = np.flatnonzero(np.r_[key_s[1:] != key_s[:-1], True]) if len(key_s) else np.zeros(0, np.int64)
    first = np.r_[0, last[:-1] + 1] if len(last) else last
    n_clicks = np.add.reduceat(t_click[order].astype(np.int64), first) if len(first) else first
    n_views = (last - first + 1) - n_clicks
    pair_adv = key_s[last] // world.n_users
    pair_user = key_s[last] % world.n_users
    pair_aff = np.clip(np.log(interests[pair_user, world.adv_target_cat[pair_adv]] * n_cat + 1e-6), -3, 3)
    p = (1 - 0.993 ** n_views * 0.90 ** n_clicks) * np.clip(np.exp(0.4 * pair_aff), 0.3, 3.0)
    conv = np.flatnonzero(r.random(len(p)) < p)
    delay = np.minimum(r.lognormal(np.log(2 * HOUR_MS), 1.4, len(conv)), MAX_CONVERSION_DELAY_MS).astype(np.int64)
    conv_adv = pair_adv[conv]
    conv_type = np.array([schemas.CONVERSION_TYPES.index(world.adv_conversion[x]) for x in conv_adv], dtype=np.int64)
    value = np.maximum(100, r.lognormal(np.log(3_500), 0.8, len(conv))).astype(np.int64)
    return {"ts": t_ts[order][last[conv]] + 1_000 + delay, "camp": t_camp[order][last[conv]],
            "adv": conv_adv, "user": pair_user[conv], "type": conv_type, "value": value,
            "purchase": conv_type == schemas.CONVERSION_TYPES.index("purchase")}


def _ad_events_frame(world: World, tag: str, imp: dict, conv: dict) -> pl.DataFrame:
    """One ad_events frame: impressions, then clicks, then conversions; each column null where
    its event type has no such field (a conversion has no placement, only a purchase a value)."""
    ci, n_imp = imp["ci"], len(imp["ts"])
    n_c, n_v = len(ci), len(conv["ts"])

    def per_type(field: str, conv_value: np.ndarray) -> np.ndarray:
        return np.concatenate([imp[field], imp[field][ci], conv_value])

    et = np.concatenate([np.zeros(n_imp, np.int64), np.ones(n_c, np.int64), np.full(n_v, 2)])
    all_c = per_type("camp", conv["camp"])
    all_ts = np.concatenate([imp["ts"], imp["click_ts"], conv["ts"]])
    cost_all = pl.Series(np.concatenate([imp["cost"], np.full(n_c + n_v, -1)]))
    watch_all = pl.Series(np.concatenate([imp["watch"], np.zeros(n_c + n_v, np.int64)]))
    conv_mask = pl.Series(et == 2)
    no_conv = np.zeros(n_v, np.int64)
    before_conv = np.zeros(n_imp + n_c, np.int64)
    return _frame("ad_events", {
        # impressions and clicks happen on the ads' day; conversions are named by their own day
        "event_id": pl.concat([_ids(f"ad{tag}-", np.arange(n_imp + n_c)),
                               _ids_on_day(world.start_date, "cv", conv["ts"], f"-{tag}-", np.arange(n_v))]),
        "ts_ms": all_ts,
        "user_id": per_type("user", conv["user"]) + 1,
        "event_type": _strs(schemas.AD_EVENT_TYPES, et),
        "advertiser_id": world.camp_adv[all_c] + 1,
        "campaign_id": all_c + 1,
        "ad_group_id": pl.Series(per_type("ad_group", no_conv)).set(conv_mask, None),
        "creative_id": pl.Series(per_type("creative", no_conv)).set(conv_mask, None),
        "placement": _strs(schemas.AD_PLACEMENTS, per_type("placement", no_conv)).set(conv_mask, None),
        "cost_micros": cost_all.set(cost_all < 0, None),
        "watch_time_ms": watch_all.set(pl.Series(et != 0), None),
        "conversion_type": _strs(schemas.CONVERSION_TYPES, np.concatenate([before_conv, conv["type"]])).set(
            ~conv_mask, None),
        "value_cents": pl.Series(np.concatenate([before_conv, conv["value"]])).set(
            pl.Series(np.concatenate([np.zeros(n_imp + n_c, bool), conv["purchase"]])).not_(), None),
    }, all_ts)


# ------------------------------------------------------------------------------------ live


def gen_live(world: World, day: int, events_per_day: int) -> dict[str, pl.DataFrame]:
    r = rng_for(world.seed, "live", day)
    d0 = day_start_ms(world.start_date, day)
    d1 = d0 + DAY_MS
    tag = date_tag(world.start_date, day)
    streamers = np.flatnonzero(world.creator_live)
    live = streamers[r.random(len(streamers)) < 0.35]
    dur = r.integers(20, 181, len(live)) * 60_000
    start = np.minimum(diurnal_times(r, len(live), d0), d1 - dur - 1_000)
    stream_ids = pl.select(pl.concat_str([pl.lit(f"live{tag}-"), pl.Series(live + 1).cast(pl.String)])).to_series()
    n_gifts = round(GIFT_SHARE * events_per_day) if len(live) else 0
    lam = np.sqrt(world.creator_followers[live].astype(np.float64))
    per_stream = r.multinomial(n_gifts, lam / lam.sum()) if len(live) else np.zeros(0, np.int64)
    s = np.repeat(np.arange(len(live)), per_stream)
    ts = start[s] + (r.random(len(s)) * dur[s]).astype(np.int64)
    user = sample_weighted(r, world.samplers["user_activity"], len(s))
    gift = sample_weighted(r, np.cumsum([g[2] for g in text.GIFT_TYPES]), len(s))
    count = np.minimum(r.geometric(0.6, len(s)), 99)
    value = np.array([g[1] for g in text.GIFT_TYPES])[gift] * count
    gifts = _frame("live_gifts", {
        "event_id": _ids(f"gift{tag}-", np.arange(len(s))),
        "ts_ms": ts,
        "user_id": user + 1,
        "stream_id": stream_ids.gather(s),
        "creator_id": live[s] + 1,
        "gift_type": _strs([g[0] for g in text.GIFT_TYPES], gift),
        "gift_count": count,
        "value_cents": value,
    }, ts)
    # live shopping: shop creators sell during their streams
    shop = world.creator_shop[live[s]] & (r.random(len(s)) < 0.05)
    oi = np.flatnonzero(shop)
    o_ts = np.minimum(ts[oi] + r.integers(1_000, 120_000, len(oi)), d1 - 1)
    orders = _orders(r, tag, "l", o_ts, sample_weighted(r, world.samplers["user_activity"], len(oi)),
                     live[s[oi]], source=["live"] * len(oi), stream_id=stream_ids.gather(s[oi]))
    return {"live_gifts": gifts, "orders": orders}


GENERATORS = {"feed": gen_feed, "ads": gen_ads, "live": gen_live}
