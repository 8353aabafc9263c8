-- Campaigns ranked by return on ad spend over all the data, with the funnel behind it.
-- Ratios are recomputed from summed counts (never averaged across days); NULL when spend is 0.
-- Only campaigns with at least min_spend_usd of spend are ranked: a ROAS over a few dollars is one
-- lucky conversion divided by almost nothing (unguarded, a campaign with $2.94 of spend ranked
-- first). Lower the threshold to look at small campaigns, knowing their ratios are noise.
WITH params AS (SELECT 100.0 AS min_spend_usd)
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
HAVING sum(spend_micros) / 1e6 >= (SELECT min_spend_usd FROM params)
ORDER BY roas DESC NULLS LAST, spend_usd DESC;
