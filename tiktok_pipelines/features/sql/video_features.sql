-- features/video: one row per video seen in the window, as of cutoff (the feature date's 00:00 UTC).
-- Rendered by tiktok_pipelines.features.daily.video_sql, which builds the per-window columns
-- (per_view, per_imp, per_act, cols) and the trending terms: velocity (decayed
-- plays per day, half-life half_life_ms ms) against baseline (the plain daily rate of the
-- TRENDING_BASELINE_DAYS days before the last one). Inputs: the temp views of prepare_inputs.
WITH va AS (
    SELECT video_id, ${per_view},
           sum(pow(2.0, -(${cutoff} - ts_ms) / ${half_life_ms}.0)) AS decayed_plays,
           count(*) FILTER (WHERE ts_ms < ${last_day_start}
                            AND ts_ms >= ${baseline_start}) AS baseline_plays,
           any_value(creator_id) AS event_creator_id
    FROM views GROUP BY video_id
), ia AS (
    SELECT video_id, ${per_imp} FROM imps GROUP BY video_id
), aa AS (
    SELECT video_id, ${per_act} FROM inter WHERE video_id IS NOT NULL GROUP BY video_id
), ids AS (
    SELECT video_id FROM views UNION SELECT video_id FROM imps
    UNION SELECT video_id FROM inter WHERE event_type IN ('like', 'share', 'comment')
), scored AS (
    SELECT ids.video_id,
           ${cutoff}::BIGINT AS as_of_ms,
           coalesce(c.creator_id, va.event_creator_id) AS creator_id,
           coalesce(c.category, '${unknown_category}') AS category,
           CASE WHEN c.published_at_ms <= ${cutoff} THEN (${cutoff} - c.published_at_ms) / ${day_ms}.0 END AS video_age_days,
           ${cols},
           ${velocity} AS play_velocity_per_day,
           ${baseline} AS baseline_plays_per_day
    FROM ids
    LEFT JOIN va USING (video_id) LEFT JOIN ia USING (video_id) LEFT JOIN aa USING (video_id)
    LEFT JOIN catalog_videos c USING (video_id)
    WHERE ids.video_id IS NOT NULL
)
SELECT *, ln((1 + play_velocity_per_day) / (1 + baseline_plays_per_day)) AS trending_score
FROM scored
ORDER BY video_id
