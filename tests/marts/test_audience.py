"""Audience segments (issue 5, part 6): demographics x interest category."""

from __future__ import annotations


def test_interest_is_the_longest_watched_category_catalog_first_then_tagger(con) -> None:
    got = dict(con.sql("SELECT user_id, interest_category FROM intermediate.int_user_segments "
                       "WHERE user_id IN (1, 4, 5, 6)").fetchall())
    # user 1 watched video 10 (catalog: food; the tagger's 'sports' does not override it);
    # user 4 watched video 20, which has no catalog category: the tagger's 'dance' stands in;
    # user 6 watched nothing
    assert got == {1: "food", 4: "dance", 5: "travel", 6: "none"}


def test_segment_size_engagement_and_conversion(con) -> None:
    r = con.sql("SELECT * FROM marts.audience_segments WHERE age_band = '18-24' AND gender = 'female' "
                "AND country = 'US' AND interest_category = 'food'").pl().to_dicts()
    assert len(r) == 1
    r = r[0]
    # users 1, 2, 3: 4 plays (55 s), 2 likes + 1 comment + 1 share; 3 ad impressions each, all clicked and bought
    assert (r["users"], r["active_users"], r["views"], r["watch_time_ms"], r["engagement_rate"]) == (3, 3, 4, 55_000, 1.0)
    assert (r["ad_impressions"], r["ad_reach"], r["ad_clicks"], r["conversions"], r["converting_users"]) == (9, 3, 3, 3, 3)
    assert (r["cvr"], r["conversion_rate"], r["purchase_value_cents"]) == (1.0, 1.0, 4_500)
    sizes = con.sql("SELECT sum(users), count(*) FROM marts.audience_segments").fetchall()[0]
    assert sizes[0] == 80_000  # every user in exactly one segment
    # a segment nobody in it played anything: engagement has no denominator
    none = con.sql("SELECT views, engagement_rate, avg_watch_time_ms FROM marts.audience_segments "
                   "WHERE age_band = '25-34' AND interest_category = 'none'").fetchall()
    assert none == [(0, None, None)]
