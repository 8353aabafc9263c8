/* ---
materialized: table
description: >
  One row per creator and UTC day with any play, interaction or revenue: views, watch time, average
  watch time, full-watch rate, reach, follower growth, engagement rate, traffic-source shares, and
  the day's revenue by stream (creator and platform shares in cents, from
  marts.creator_revenue_daily). Rates are fractions (0.25 = 25%) and NULL on a day without views.
unique_key: [creator_id, day]
columns:
  creator_id:
    description: The creator.
    tests: [not_null]
  day:
    description: UTC date.
    tests: [not_null]
  creator_type:
    description: individual or guild (stg_creators); NULL for a creator missing from the catalog.
    tests: [{accepted_values: {values: [individual, guild]}}]
  views:
    description: Plays of the creator's videos.
    tests: [not_null]
  watch_time_ms:
    description: Total watch time of those plays, in milliseconds.
    tests: [not_null]
  avg_watch_time_ms:
    description: watch_time_ms / views (NULL without views).
  full_watch_rate:
    description: Plays watched to the end (watch time >= duration) / views (NULL without views).
  reach:
    description: Distinct viewers that day.
    tests: [not_null]
  follower_growth:
    description: New followers that day (distinct users with a follow event).
    tests: [not_null]
  likes:
    description: Likes that day.
    tests: [not_null]
  comments:
    description: Comments that day.
    tests: [not_null]
  shares:
    description: Shares that day.
    tests: [not_null]
  engagement_rate:
    description: (likes + comments + shares) / views (NULL without views).
  share_foryou:
    description: Share of views from the For You feed (NULL without views).
  share_following:
    description: Share of views from the Following feed.
  share_search:
    description: Share of views from search.
  share_profile:
    description: Share of views from the profile page.
  share_share_link:
    description: Share of views from shared links.
  share_ad:
    description: Share of views from ads.
  share_live:
    description: Share of views from live rooms.
  gift_gross_cents:
    description: Live gifts received (accepted ones), gross, in cents.
    tests: [not_null]
  gift_creator_cents:
    description: The streamer's share of gift_gross_cents.
    tests: [not_null]
  gift_platform_cents:
    description: The platform's share of gift_gross_cents.
    tests: [not_null]
  ecommerce_gross_cents:
    description: E-commerce sales, gross, in cents.
    tests: [not_null]
  ecommerce_creator_cents:
    description: Sales minus the platform commission.
    tests: [not_null]
  ecommerce_platform_cents:
    description: The platform commission on sales.
    tests: [not_null]
  dou_plus_spend_cents:
    description: Accepted DOU+ orders promoting the creator's videos, booked on the order's start day.
    tests: [not_null]
  creator_earnings_cents:
    description: gift_creator_cents + ecommerce_creator_cents.
    tests: [not_null]
  platform_revenue_cents:
    description: gift_platform_cents + ecommerce_platform_cents + dou_plus_spend_cents.
    tests: [not_null]
--- */
WITH creator_revenue_daily AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('creator_revenue_daily') }}
),
int_creator_views_daily AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_creator_views_daily') }}
),
int_creator_interactions_daily AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_creator_interactions_daily') }}
),
stg_creators AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_creators') }}
),

revenue AS (
    SELECT
        creator_id,
        day,
        sum(gross_cents)          FILTER (WHERE revenue_stream = 'live_gifts') AS gift_gross_cents,
        sum(creator_share_cents)  FILTER (WHERE revenue_stream = 'live_gifts') AS gift_creator_cents,
        sum(platform_share_cents) FILTER (WHERE revenue_stream = 'live_gifts') AS gift_platform_cents,
        sum(gross_cents)          FILTER (WHERE revenue_stream = 'ecommerce')  AS ecommerce_gross_cents,
        sum(creator_share_cents)  FILTER (WHERE revenue_stream = 'ecommerce')  AS ecommerce_creator_cents,
        sum(platform_share_cents) FILTER (WHERE revenue_stream = 'ecommerce')  AS ecommerce_platform_cents,
        sum(gross_cents)          FILTER (WHERE revenue_stream = 'dou_plus')   AS dou_plus_spend_cents
    FROM creator_revenue_daily
    GROUP BY creator_id, day
),
keys AS (
    SELECT creator_id, day FROM int_creator_views_daily
    UNION
    SELECT creator_id, day FROM int_creator_interactions_daily
    UNION
    SELECT creator_id, day FROM revenue
),
joined AS (
    SELECT
        k.creator_id,
        k.day,
        c.creator_type,
        coalesce(v.views, 0) AS views,
        coalesce(v.watch_time_ms, 0) AS watch_time_ms,
        coalesce(v.full_watches, 0) AS full_watches,
        coalesce(v.viewers, 0) AS reach,
        coalesce(i.new_followers, 0) AS follower_growth,
        coalesce(i.likes, 0) AS likes,
        coalesce(i.comments, 0) AS comments,
        coalesce(i.shares, 0) AS shares,
        v.views_foryou, v.views_following, v.views_search, v.views_profile,
        v.views_share_link, v.views_ad, v.views_live,
        CAST(coalesce(r.gift_gross_cents, 0) AS BIGINT) AS gift_gross_cents,
        CAST(coalesce(r.gift_creator_cents, 0) AS BIGINT) AS gift_creator_cents,
        CAST(coalesce(r.gift_platform_cents, 0) AS BIGINT) AS gift_platform_cents,
        CAST(coalesce(r.ecommerce_gross_cents, 0) AS BIGINT) AS ecommerce_gross_cents,
        CAST(coalesce(r.ecommerce_creator_cents, 0) AS BIGINT) AS ecommerce_creator_cents,
        CAST(coalesce(r.ecommerce_platform_cents, 0) AS BIGINT) AS ecommerce_platform_cents,
        CAST(coalesce(r.dou_plus_spend_cents, 0) AS BIGINT) AS dou_plus_spend_cents
    FROM keys AS k
    LEFT JOIN int_creator_views_daily AS v USING (creator_id, day)
    LEFT JOIN int_creator_interactions_daily AS i USING (creator_id, day)
    LEFT JOIN revenue AS r USING (creator_id, day)
    LEFT JOIN stg_creators AS c ON c.creator_id = k.creator_id
),

final AS (
    SELECT
        creator_id,
        day,
        creator_type,
        views,
        watch_time_ms,
        watch_time_ms / nullif(views, 0) AS avg_watch_time_ms,
        full_watches / nullif(views, 0) AS full_watch_rate,
        reach,
        follower_growth,
        likes,
        comments,
        shares,
        (likes + comments + shares) / nullif(views, 0) AS engagement_rate,
        views_foryou / nullif(views, 0) AS share_foryou,
        views_following / nullif(views, 0) AS share_following,
        views_search / nullif(views, 0) AS share_search,
        views_profile / nullif(views, 0) AS share_profile,
        views_share_link / nullif(views, 0) AS share_share_link,
        views_ad / nullif(views, 0) AS share_ad,
        views_live / nullif(views, 0) AS share_live,
        gift_gross_cents,
        gift_creator_cents,
        gift_platform_cents,
        ecommerce_gross_cents,
        ecommerce_creator_cents,
        ecommerce_platform_cents,
        dou_plus_spend_cents,
        gift_creator_cents + ecommerce_creator_cents AS creator_earnings_cents,
        gift_platform_cents + ecommerce_platform_cents + dou_plus_spend_cents AS platform_revenue_cents
    FROM joined
)

SELECT * FROM final
