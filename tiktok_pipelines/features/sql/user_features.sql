-- features/user: one row per user seen in the window, as of cutoff (the feature date's 00:00 UTC).
-- Rendered by tiktok_pipelines.features.daily.user_sql, which builds the per-window columns
-- (per_view, per_imp, per_act, rates) and the 24 hour shares (hours); long is
-- the longest window in days. Inputs: the temp views of prepare_inputs (views, imps, inter,
-- catalog_videos). Column definitions: docs/features.md.
WITH v AS (
    SELECT user_id, video_id, ts_ms, watch_time_ms,
           watch_time_ms / video_duration_ms::DOUBLE AS watch_ratio,
           (ts_ms // 3600000) % 24 AS hour_utc
    FROM views
), va AS (
    SELECT user_id,
           ${per_view},
           quantile_cont(watch_ratio, 0.5) AS watch_ratio_p50_${long}d,
           quantile_cont(watch_ratio, 0.9) AS watch_ratio_p90_${long}d,
           avg(watch_time_ms) AS watch_time_ms_mean_${long}d,
           quantile_cont(watch_time_ms, 0.5) AS watch_time_ms_p50_${long}d,
           quantile_cont(watch_time_ms, 0.9) AS watch_time_ms_p90_${long}d,
           [${hours}] AS hour_share_${long}d,
           count(DISTINCT ts_ms // ${day_ms}) AS active_days_${long}d
    FROM v GROUP BY user_id
), ia AS (
    SELECT user_id, ${per_imp} FROM imps GROUP BY user_id
), aa AS (
    SELECT user_id, ${per_act} FROM inter GROUP BY user_id
), cat AS (
    SELECT v.user_id, coalesce(c.category, '${unknown_category}') AS category, sum(v.watch_time_ms) AS wt
    FROM v LEFT JOIN catalog_videos c USING (video_id)
    GROUP BY ALL
), ca AS (
    SELECT user_id,
           CASE WHEN sum(wt) > 0 THEN map_from_entries(list({'k': category, 'v': wt / total}
                ORDER BY wt DESC, category)) END AS category_affinity_${long}d,
           CASE WHEN sum(wt) > 0 THEN list(category ORDER BY wt DESC, category)[1] END AS top_category_${long}d
    FROM (SELECT *, sum(wt) OVER (PARTITION BY user_id)::DOUBLE AS total FROM cat)
    GROUP BY user_id
), ids AS (
    SELECT user_id FROM views UNION SELECT user_id FROM imps UNION SELECT user_id FROM inter
)
SELECT ids.user_id,
       ${cutoff}::BIGINT AS as_of_ms,
       ${rates},
       va.watch_ratio_p50_${long}d, va.watch_ratio_p90_${long}d,
       va.watch_time_ms_mean_${long}d, va.watch_time_ms_p50_${long}d, va.watch_time_ms_p90_${long}d,
       va.hour_share_${long}d,
       CASE WHEN va.hour_share_${long}d IS NOT NULL
            THEN list_position(va.hour_share_${long}d, list_max(va.hour_share_${long}d)) - 1 END AS peak_hour_${long}d,
       coalesce(va.active_days_${long}d, 0) AS active_days_${long}d,
       ca.category_affinity_${long}d, ca.top_category_${long}d
FROM ids
LEFT JOIN va USING (user_id) LEFT JOIN ia USING (user_id) LEFT JOIN aa USING (user_id) LEFT JOIN ca USING (user_id)
WHERE ids.user_id IS NOT NULL
ORDER BY ids.user_id
