-- Late actions: plays and interactions of a micro-batch (new_views, new_inter) that name an
-- impression already emitted (st_closed) and fall inside its label window: they came too late
-- to label it. Rendered by tiktok_pipelines.training.stream_join.StreamJoiner.step.
SELECT count(*) FROM (
    SELECT request_id, video_id, user_id, ts_ms FROM new_views
    UNION ALL SELECT request_id, video_id, user_id, ts_ms FROM new_inter) a
JOIN st_closed c USING (request_id, video_id, user_id)
WHERE a.ts_ms BETWEEN c.ts_ms AND c.ts_ms + ${label_window_ms}
