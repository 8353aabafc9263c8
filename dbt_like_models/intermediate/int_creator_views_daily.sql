/* ---
materialized: table
description: >
  Plays per creator and UTC day (from stg_views): play count, watch time, full watches, distinct
  viewers and plays per traffic source. The building block of marts.creator_daily.
unique_key: [creator_id, day]
columns:
  creator_id:
    description: The creator whose video was played.
    tests: [not_null]
  day:
    description: UTC date of the play (day of ts_ms).
    tests: [not_null]
  views:
    description: Plays (stg_views rows), a quick swipe-away included.
    tests: [not_null]
  watch_time_ms:
    description: Sum of watch_time_ms over the plays (a loop can exceed the video's duration).
    tests: [not_null]
  full_watches:
    description: Plays whose watch time reached the video's duration (watch_time_ms >= video_duration_ms).
    tests: [not_null]
  viewers:
    description: Distinct users who played one of the creator's videos that day (the creator's daily reach).
    tests: [not_null]
  views_foryou:
    description: Plays from the For You feed.
    tests: [not_null]
  views_following:
    description: Plays from the Following feed.
    tests: [not_null]
  views_search:
    description: Plays from search results.
    tests: [not_null]
  views_profile:
    description: Plays from the creator's profile page.
    tests: [not_null]
  views_share_link:
    description: Plays opened from a shared link.
    tests: [not_null]
  views_ad:
    description: Plays from an ad.
    tests: [not_null]
  views_live:
    description: Plays from a live room.
    tests: [not_null]
--- */
WITH stg_views AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_views') }}
),

final AS (
    SELECT
        creator_id,
        day,
        count(*)                                                   AS views,
        CAST(coalesce(sum(watch_time_ms), 0) AS BIGINT)            AS watch_time_ms,
        count(*) FILTER (WHERE watch_time_ms >= video_duration_ms) AS full_watches,
        count(DISTINCT user_id)                                    AS viewers,
        count(*) FILTER (WHERE traffic_source = 'foryou')          AS views_foryou,
        count(*) FILTER (WHERE traffic_source = 'following')       AS views_following,
        count(*) FILTER (WHERE traffic_source = 'search')          AS views_search,
        count(*) FILTER (WHERE traffic_source = 'profile')         AS views_profile,
        count(*) FILTER (WHERE traffic_source = 'share_link')      AS views_share_link,
        count(*) FILTER (WHERE traffic_source = 'ad')              AS views_ad,
        count(*) FILTER (WHERE traffic_source = 'live')            AS views_live
    FROM stg_views
    GROUP BY creator_id, day
)

SELECT * FROM final
