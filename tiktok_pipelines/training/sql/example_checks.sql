-- The training_examples checks' counts, from one scan of the examples' committed snapshot
-- (${source}). ${null_labels} / ${null_keys}: "a IS NULL OR b IS NULL ..." over the labels / keys;
-- ${engaged_watch_ratio}, ${negative_rate}: the joiner's settings the labels must agree with.
SELECT count(*) AS rows,
       count(*) FILTER (WHERE ${null_labels}) AS null_labels,
       count(*) FILTER (WHERE watch_ratio < 0 OR finished <> (watch_ratio >= 1)
                        OR engaged <> (liked OR shared OR commented OR followed
                                       OR watch_ratio >= ${engaged_watch_ratio})) AS inconsistent_labels,
       count(*) FILTER (WHERE sample_rate <> CASE WHEN engaged THEN 1.0 ELSE ${negative_rate} END) AS bad_sample_rate,
       count(*) FILTER (WHERE ${null_keys}) AS null_keys,
       count(*) - count(DISTINCT example_id) AS duplicate_ids,
       count(*) FILTER (WHERE event_date::VARCHAR <> strftime(epoch_ms(ts_ms), '%Y-%m-%d')) AS misdated,
       count(*) FILTER (WHERE video_age_h < 0) AS video_after_impression
FROM ${source}
