-- online_counters, long format (entity, id, counter, value): the serving stack's counters as of
-- as_of_ms, from the registered tables v (plays) and x (interactions). Rendered by
-- tiktok_pipelines.features.online.compute_counters; the definitions are simulator/observed.py's.
WITH vw AS (SELECT * FROM v WHERE ts_ms <= ${as_of_ms} AND ts_ms > ${day_ago_ms}),
     xw AS (SELECT * FROM x WHERE ts_ms <= ${as_of_ms} AND ts_ms > ${day_ago_ms}),
     today AS (SELECT * FROM v WHERE ts_ms <= ${as_of_ms} AND ts_ms >= ${day0_ms})
SELECT 'user' AS entity, user_id AS id, 'views_24h' AS counter, count(*) AS value FROM vw GROUP BY 1, 2
UNION ALL SELECT 'user', user_id, 'engagements_24h', count(*) FROM xw GROUP BY 1, 2
UNION ALL SELECT 'video', video_id, 'views_24h', count(*) FROM vw GROUP BY 1, 2
UNION ALL SELECT 'video', video_id, 'plays_today', count(*) FROM today GROUP BY 1, 2
UNION ALL SELECT 'video', video_id, 'engaged_today',
                 count(*) FILTER (WHERE watch_time_ms >= ${engaged_watch_ratio} * video_duration_ms)
          FROM today GROUP BY 1, 2
UNION ALL SELECT 'video', video_id, 'plays_last_hour', count(*) FROM today
          WHERE ts_ms > ${trending_start_ms} GROUP BY 1, 2
UNION ALL SELECT 'creator', creator_id, 'follows_today', count(*) FROM x
          WHERE event_type = 'follow' AND ts_ms <= ${as_of_ms} AND ts_ms >= ${day0_ms} GROUP BY 1, 2
ORDER BY 1, 3, 2
