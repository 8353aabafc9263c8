-- Engagement of the For-You personal slots in the joiner's examples (source: one date's
-- examples), each example weighted by 1 / sample_rate to undo the negative downsampling.
SELECT sum(1 / sample_rate) AS impressions,
       sum(engaged::DOUBLE / sample_rate) / sum(1 / sample_rate) AS engaged_rate,
       sum(played::DOUBLE / sample_rate) / sum(1 / sample_rate) AS play_rate,
       sum(coalesce(watch_ratio, 0) / sample_rate) / sum(1 / sample_rate) AS mean_watch_ratio
FROM ${source}
WHERE surface = 'foryou' AND candidate_source = 'personal'
