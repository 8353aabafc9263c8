-- Full-watch rate (plays watched to the end) and average watch time by traffic source and day:
-- which ways into a video hold viewers best.
SELECT
    day,
    traffic_source,
    count(*)                                                                   AS views,
    round(count(*) FILTER (WHERE watch_time_ms >= video_duration_ms) / count(*), 4) AS full_watch_rate,
    round(avg(watch_time_ms) / 1000, 1)                                        AS avg_watch_seconds
FROM staging.stg_views
GROUP BY day, traffic_source
ORDER BY day, views DESC;
