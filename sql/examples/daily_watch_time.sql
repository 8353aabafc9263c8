-- Daily plays, viewers and watch time by country; late events count on the day they happened.
SELECT
    v.event_date,
    u.country,
    count(*)                                  AS plays,
    count(DISTINCT v.user_id)                 AS viewers,
    round(sum(v.watch_time_ms) / 3.6e6, 1)    AS watch_hours,
    round(avg(least(v.watch_time_ms, v.video_duration_ms) / v.video_duration_ms), 3) AS avg_completion
FROM raw.views AS v
JOIN dims.users AS u USING (user_id)
GROUP BY ALL
ORDER BY v.event_date, plays DESC;
