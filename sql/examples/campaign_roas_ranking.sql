-- Campaigns ranked by return on ad spend over all the data, with the funnel behind it.
-- Ratios are recomputed from summed counts (never averaged across days); NULL when spend is 0.
SELECT
    campaign_id,
    any_value(ad_format)                                           AS ad_format,
    any_value(objective)                                           AS objective,
    round(sum(spend_usd), 2)                                       AS spend_usd,
    sum(impressions)                                               AS impressions,
    sum(clicks)                                                    AS clicks,
    sum(conversions)                                               AS conversions,
    round(sum(purchase_value_cents) / 100, 2)                      AS purchase_value_usd,
    round(sum(purchase_value_cents) / 100 / nullif(sum(spend_micros) / 1e6, 0), 3) AS roas,
    round(sum(spend_micros) / 1e6 / nullif(sum(conversions), 0), 3)                AS cpa_usd,
    round(sum(clicks) / nullif(sum(impressions), 0), 4)                            AS ctr
FROM marts.ad_performance_daily
GROUP BY campaign_id
ORDER BY roas DESC NULLS LAST, spend_usd DESC;
