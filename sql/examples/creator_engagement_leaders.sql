-- Creators with the highest engagement rate ((likes + comments + shares) / views) over the data,
-- among those with at least 100 views, with reach, follower growth and full-watch rate.
SELECT
    creator_id,
    sum(views)                                                   AS views,
    sum(follower_growth)                                         AS new_followers,
    round(sum(likes + comments + shares) / sum(views), 4)        AS engagement_rate,
    round(sum(full_watch_rate * views) / sum(views), 4)          AS full_watch_rate,
    round(sum(watch_time_ms) / sum(views) / 1000, 1)             AS avg_watch_seconds,
    round(sum(share_foryou * views) / sum(views), 3)             AS share_foryou
FROM marts.creator_daily
GROUP BY creator_id
HAVING sum(views) >= 100
ORDER BY engagement_rate DESC, views DESC
LIMIT 20;
