"""Determinism, catalogs (KuaiRec and generated), latent signal, ads journeys, truth vs disk,
continuing a world into a later day range."""

from __future__ import annotations

import collections
import hashlib
import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.simulator.conftest import KUAIREC_DIR, SMALL, load, reason_for
from tiktok_pipelines import schemas
from tiktok_pipelines.simulator import KINDS, simulate, text


def _digest(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _valid(sim, stream):
    for s, rel, flushed, line, raw in sim.lines(stream):
        if reason_for(s, raw, flushed) is None:
            yield json.loads(raw)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    args = dict(SMALL, events_per_day=8_000)
    simulate(a, **args)
    simulate(b, **args)
    simulate(c, **{**args, "seed": args["seed"] + 1})
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db  # landing, catalog and truth alike
    assert any(k.startswith("landing/") for k in da)
    landing = [k for k in da if k.startswith("landing/")]
    assert sum(da[k] != dc.get(k) for k in landing) > len(landing) // 2


def test_truth_counts_match_what_is_on_disk(small_sim):
    recs = small_sim.records
    per_file = collections.Counter(zip(recs["rel_path"], recs["kind"]))
    total = 0
    for row in small_sim.files.iter_rows(named=True):
        data = (small_sim.out / "landing" / row["rel_path"]).read_bytes()
        n = data.count(b"\n")
        assert n == row["lines"] == sum(row[k] for k in KINDS)
        for k in KINDS[1:]:
            assert per_file[(row["rel_path"], k)] == row[k], (row["rel_path"], k)
        assert row["valid"] == row["clean"] + row["late"]
        assert row["expected_quarantine"] == n - row["valid"] - row["expected_duplicate"]
        total += n
    s = small_sim.summary
    assert total == s.lines == sum(s.lines_by_stream.values())
    assert sum(s.dirty_by_kind.values()) == recs.filter(~pl.col("kind").is_in(["late"])).height
    assert s.files_written == small_sim.files.height
    assert json.loads((small_sim.out / "truth" / "runs.json").read_text())[0]["days"] == 1


def test_dirty_share_follows_the_rate(small_sim):
    s = small_sim.summary
    dirty = sum(s.dirty_by_kind.values())
    assert 0.03 < dirty / s.lines < 0.05  # dirty_rate=0.04
    late = sum(s.late_by_stream.values())
    assert 0.012 < late / s.lines < 0.028  # late_rate=0.02
    assert 16_000 < s.lines < 24_000  # events_per_day=20_000


def test_catalog_tables_match_the_contract(small_sim):
    for name, table in schemas.CATALOG.items():
        t = pq.read_table(small_sim.out / "catalog" / f"{name}.parquet")
        assert t.schema.names == list(table.columns)
        want = {"int64": pa.int64(), "string": pa.string(), "float64": pa.float64(), "bool": pa.bool_(),
                "list<string>": pa.list_(pa.string())}
        assert [f.type for f in t.schema] == [want[v] for v in table.columns.values()]
    creators = pl.read_parquet(small_sim.out / "catalog" / "creators.parquet")
    guild = creators.filter(pl.col("creator_type") == "guild")
    assert guild.height > 0 and guild["guild_share"].is_between(0.40, 0.55).all()
    assert guild.group_by("guild_id").agg(pl.col("guild_share").n_unique())["guild_share"].max() == 1
    assert creators.filter(pl.col("creator_type") == "individual")["guild_id"].null_count() == \
        creators.filter(pl.col("creator_type") == "individual").height
    camps = pl.read_parquet(small_sim.out / "catalog" / "campaigns.parquet")
    assert set(camps["ad_format"]) == {"feed", "splash", "dou_plus"}
    assert (camps.filter(pl.col("ad_format") == "splash")["flat_fee_cents"] > 1_000_000).all()
    dou = camps.filter(pl.col("ad_format") == "dou_plus")
    assert dou["flat_fee_cents"].is_between(1_000, 700_000).all() and dou["promoted_video_id"].null_count() == 0
    assert camps.filter(pl.col("ad_format") == "feed")["cpm_micros"].null_count() == 0
    users = pl.read_parquet(small_sim.out / "catalog" / "users.parquet")
    assert set(users["age_band"]) <= set(text.AGE_BANDS) and users["language"].n_unique() >= 5


@pytest.fixture(scope="module")
def two_day_sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim_two_days")
    return load(out, simulate(out, **{**SMALL, "days": 2}))


def test_ads_cost_and_multi_touch_journeys(two_day_sim):
    small_sim = two_day_sim
    camps = pl.read_parquet(small_sim.out / "catalog" / "campaigns.parquet")
    cpm = dict(zip(camps["campaign_id"], camps["cpm_micros"]))
    touches = collections.defaultdict(list)
    conversions = []
    for e in _valid(small_sim, "ad_events"):
        if e["event_type"] == "impression":
            if e["placement"] in ("feed", "search"):
                assert e["cost_micros"] == cpm[e["campaign_id"]] // 1000
            else:
                assert e.get("cost_micros") is None  # splash and DOU+ are flat-fee
        if e["event_type"] == "conversion":
            assert e.get("placement") is None and e["conversion_type"] in schemas.CONVERSION_TYPES
            conversions.append(e)
        else:
            touches[(e["user_id"], e["advertiser_id"])].append((e["ts_ms"], e["placement"]))
    assert conversions
    multi = [c for c in conversions
             if len({p for t, p in touches[(c["user_id"], c["advertiser_id"])] if t < c["ts_ms"]}) >= 2]
    assert multi, "some users are reached through several placements before converting"
    placements = {p for ts in touches.values() for _, p in ts}
    assert {"feed", "splash", "dou_plus"} <= placements
    # conversions land minutes to days after the last touch, some on a later day
    delays = [c["ts_ms"] - max(t for t, _ in touches[(c["user_id"], c["advertiser_id"])] if t < c["ts_ms"])
              for c in conversions]
    assert min(delays) < 3_600_000 and max(delays) > 6 * 3_600_000
    # purchases through ads are also orders, attributed to the campaign
    ad_orders = [o for o in _valid(small_sim, "orders") if o["source"] == "ad"]
    assert ad_orders and all(o.get("campaign_id") for o in ad_orders)
    assert {o["source"] for o in _valid(small_sim, "orders")} == set(schemas.ORDER_SOURCES)


def test_latent_interest_drives_engagement(small_sim):
    truth = small_sim.out / "truth"
    top = dict(pl.read_parquet(next((truth / "user_interests").glob("*.parquet"))).select("user_id", "top_category").iter_rows())
    vcat = dict(pl.read_parquet(truth / "videos.parquet").select("video_id", "latent_category").iter_rows())
    likes = {(i["user_id"], i["video_id"]) for i in _valid(small_sim, "interactions") if i["event_type"] == "like"}
    stats = {True: [0, 0, 0], False: [0, 0, 0]}  # views, likes, watch fraction
    for v in _valid(small_sim, "views"):
        match = top[v["user_id"]] == vcat[v["video_id"]]
        stats[match][0] += 1
        stats[match][1] += (v["user_id"], v["video_id"]) in likes
        stats[match][2] += min(v["watch_time_ms"] / v["video_duration_ms"], 2.0)
    like_rate = {k: s[1] / s[0] for k, s in stats.items()}
    watch = {k: s[2] / s[0] for k, s in stats.items()}
    assert stats[True][0] > 500 and stats[False][0] > 500
    assert like_rate[True] > 1.5 * like_rate[False], like_rate
    assert watch[True] > watch[False] + 0.05, watch


def test_generated_catalog_is_multilingual_with_category_hashtags(small_sim):
    videos = pl.read_parquet(small_sim.out / "catalog" / "videos.parquet")
    truth = pl.read_parquet(small_sim.out / "truth" / "videos.parquet")
    assert set(videos["source"]) == {"generated"} and videos["language"].n_unique() >= 6
    assert videos["caption"].str.contains("[\u4e00-\u9fff]").any()  # some Chinese
    assert videos["caption"].str.contains("(?i)probando|nyobain|tried").any()
    tags = videos.join(truth.select("video_id", "latent_category"), on="video_id").explode("hashtags")
    tags = tags.filter(~pl.col("hashtags").is_in(list(text.GENERIC_HASHTAGS)) & pl.col("hashtags").is_not_null())
    for cat, g in tags.group_by("latent_category"):
        assert g["hashtags"].is_in(list(text.CATEGORY_HASHTAGS[cat[0]])).mean() > 0.99


@pytest.mark.skipif(not (KUAIREC_DIR / "video_captions.csv").exists(), reason="KuaiRec data not present")
def test_kuairec_catalog_with_generated_rest(tmp_path):
    out = tmp_path / "kr"
    s = simulate(out, seed=3, users=300, videos=9_000, days=1, events_per_day=4_000, kuairec_dir=KUAIREC_DIR)
    assert s.catalog_source == "kuairec"
    videos = pl.read_parquet(out / "catalog" / "videos.parquet")
    real = videos.filter(pl.col("source") == "kuairec")
    assert real.height == 8_579 and videos.height == 9_000
    assert videos.filter(pl.col("source") == "generated")["source_video_id"].null_count() == 421
    v4 = real.filter(pl.col("source_video_id") == 4).row(0, named=True)
    assert v4["hashtags"] == ["五爱市场", "感谢快手我要上热门", "搞笑"] and v4["category"] == "时尚"
    assert "五爱市场" in v4["caption"]
    assert real["category"].null_count() == 30  # 'UNKNOWN' is missing, not a category
    assert real["category"].n_unique() == 39  # 38 names + null
    sim = load(out, s)
    cats = {json.loads(r)["served_features"].get("category") for *_, r in sim.lines("impressions")
            if r.startswith(b"{") and r.endswith(b"}") and b'"served_features":{' in r}
    assert cats & set(real["category"].drop_nulls())


def test_continue_a_world_into_later_days(tmp_path):
    out = tmp_path / "w"
    args = dict(SMALL, events_per_day=6_000)
    first = simulate(out, **args)
    catalog_before = _digest(out / "catalog")
    seqs_before = {r["stream"]: r["seq"] for r in load(out, first).files.group_by("stream").agg(
        pl.col("seq").max()).iter_rows(named=True)}
    second = simulate(out, **{**args, "days": 2}, first_day=1)
    assert second.start_date == "2026-11-02" and second.end_date == "2026-11-03"
    assert _digest(out / "catalog") == catalog_before  # same entities
    files = load(out, second).files
    for stream, g in files.group_by("stream"):
        assert g["seq"].min() > seqs_before.get(stream[0], 0)
    # the later range alone equals the same range generated separately (day-keyed randomness)
    alone = simulate(tmp_path / "alone", **{**args, "days": 2}, first_day=1)
    assert alone.lines_by_stream == second.lines_by_stream
    with pytest.raises(ValueError, match="overlap"):
        simulate(out, **args, first_day=2)
    with pytest.raises(ValueError, match="another world"):
        simulate(out, **{**args, "seed": 99}, first_day=5)
