-- features/creator: one row per creator seen in the window or ever followed, as of cutoff
-- (the feature date's 00:00 UTC). Rendered by tiktok_pipelines.features.daily.creator_sql, which
-- builds the per-window columns (growth, per_view, per_act, growth_cols, cols);
-- longest is the longest window in days. Inputs: the temp views of prepare_inputs (follows
-- holds every follow before the cutoff).
WITH firsts AS (
    -- a follower counts once, from their first follow (the event contract has no unfollow)
    SELECT creator_id, user_id, min(ts_ms) AS first_ms FROM follows
    WHERE creator_id IS NOT NULL GROUP BY creator_id, user_id
), fa AS (
    SELECT creator_id, count(*) AS followers, ${growth} FROM firsts GROUP BY creator_id
), va AS (
    SELECT creator_id, ${per_view} FROM views GROUP BY creator_id
), aa AS (
    SELECT creator_id, ${per_act} FROM inter GROUP BY creator_id
), ids AS (
    SELECT creator_id FROM fa UNION SELECT creator_id FROM views UNION SELECT creator_id FROM inter
)
SELECT ids.creator_id,
       ${cutoff}::BIGINT AS as_of_ms,
       coalesce(fa.followers, 0) AS followers,
       ${growth_cols},
       coalesce(fa.follower_growth_${longest}d, 0)
           / nullif(coalesce(fa.followers, 0) - coalesce(fa.follower_growth_${longest}d, 0), 0)::DOUBLE
           AS follower_growth_rate_${longest}d,
       ${cols}
FROM ids LEFT JOIN fa USING (creator_id) LEFT JOIN va USING (creator_id) LEFT JOIN aa USING (creator_id)
WHERE ids.creator_id IS NOT NULL
ORDER BY ids.creator_id
