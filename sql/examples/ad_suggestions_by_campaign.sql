-- What to change in each campaign: every suggestion with its evidence, biggest spenders first.
SELECT
    s.campaign_id,
    c.ad_format,
    s.suggestion_type,
    s.subject,
    s.metric,
    round(s.metric_value, 4)    AS metric_value,
    round(s.benchmark_value, 4) AS benchmark_value,
    s.suggestion
FROM marts.ad_suggestions AS s
JOIN staging.stg_campaigns AS c USING (campaign_id)
ORDER BY s.spend_usd DESC NULLS LAST, s.campaign_id, s.suggestion_type, s.subject;
