-- examples: one labelled example per impression of the temp view imp, its labels from views and
-- inter (the actions that name it, within label_window_ms), its history counts strictly before it
-- (history_window_ms) unless the server logged them (served_*), negatives downsampled by a hash.
-- Rendered by tiktok_pipelines.training.joiner.examples_sql (batch and streaming joins alike),
-- which builds the served-feature columns from SERVED_FEATURES and HISTORY_FEATURES.
WITH imp_x AS (
    SELECT event_id AS example_id, ts_ms, user_id, video_id, creator_id, request_id, position,
           surface, candidate_source, model_version, score AS served_score,
           ${served},
           ${served_history}
    FROM imp
), watched AS (
    SELECT i.example_id, max(v.watch_time_ms) AS watch_time_ms
    -- the action names its impression: (request_id, video_id), as clients log it
    FROM imp_x i JOIN views v
      ON v.request_id = i.request_id AND v.video_id = i.video_id AND v.user_id = i.user_id
     AND v.ts_ms BETWEEN i.ts_ms AND i.ts_ms + ${label_window_ms}
    GROUP BY i.example_id
), acted AS (
    SELECT i.example_id,
           bool_or(x.event_type = 'like') AS liked,
           bool_or(x.event_type = 'share') AS shared,
           bool_or(x.event_type = 'comment') AS commented,
           bool_or(x.event_type = 'follow') AS followed
    FROM imp_x i JOIN inter x
      ON x.request_id = i.request_id AND x.video_id = i.video_id AND x.user_id = i.user_id
     AND x.ts_ms BETWEEN i.ts_ms AND i.ts_ms + ${label_window_ms}
    GROUP BY i.example_id
), user_hist AS (
    -- strictly before the impression: the point-in-time rule
    SELECT i.example_id, count(*) AS user_views_24h
    FROM imp_x i JOIN views v
      ON v.user_id = i.user_id AND v.ts_ms >= i.ts_ms - ${history_window_ms} AND v.ts_ms < i.ts_ms
    GROUP BY i.example_id
), user_eng AS (
    SELECT i.example_id, count(*) AS user_engagements_24h
    FROM imp_x i JOIN inter x
      ON x.user_id = i.user_id AND x.ts_ms >= i.ts_ms - ${history_window_ms} AND x.ts_ms < i.ts_ms
    GROUP BY i.example_id
), video_hist AS (
    SELECT i.example_id, count(*) AS video_views_24h
    FROM imp_x i JOIN views v
      ON v.video_id = i.video_id AND v.ts_ms >= i.ts_ms - ${history_window_ms} AND v.ts_ms < i.ts_ms
    GROUP BY i.example_id
), labelled AS (
    SELECT i.* EXCLUDE (${served_history_names}),
           hour(epoch_ms(i.ts_ms)) AS hour_of_day,
           coalesce(i.served_user_views_24h, uh.user_views_24h, 0) AS user_views_24h,
           coalesce(i.served_user_engagements_24h, ue.user_engagements_24h, 0) AS user_engagements_24h,
           coalesce(i.served_video_views_24h, vh.video_views_24h, 0) AS video_views_24h,
           w.example_id IS NOT NULL AS played,
           coalesce(w.watch_time_ms, 0) AS watch_time_ms,
           coalesce(w.watch_time_ms, 0) / greatest(i.video_duration_ms, 1)::DOUBLE AS watch_ratio,
           coalesce(a.liked, false) AS liked,
           coalesce(a.shared, false) AS shared,
           coalesce(a.commented, false) AS commented,
           coalesce(a.followed, false) AS followed
    FROM imp_x i
    LEFT JOIN watched w USING (example_id)
    LEFT JOIN acted a USING (example_id)
    LEFT JOIN user_hist uh USING (example_id)
    LEFT JOIN user_eng ue USING (example_id)
    LEFT JOIN video_hist vh USING (example_id)
), final AS (
    SELECT *, watch_ratio >= 1 AS finished,
           (liked OR shared OR commented OR followed OR watch_ratio >= ${engaged_watch_ratio}) AS engaged
    FROM labelled
)
SELECT *, (CASE WHEN engaged THEN 1.0 ELSE ${negative_rate} END)::DOUBLE AS sample_rate
FROM final
-- deterministic downsampling: the same example is kept or dropped on every rebuild
WHERE engaged OR (hash(example_id, ${seed}) % 1000000) < ${negatives_kept_ppm}
ORDER BY ts_ms, example_id
