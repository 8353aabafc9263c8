-- Top 20 creators by gross revenue over the last 7 days of data (live gifts + e-commerce + DOU+),
-- with what they kept and what the platform earned. "Last 7 days" ends at the newest day in the
-- mart, not today, so the query works on any snapshot.
WITH last_day AS (SELECT max(day) AS d FROM marts.creator_revenue_daily)
SELECT
    r.creator_id,
    any_value(c.creator_type)                                              AS creator_type,
    sum(r.gross_usd)                                                       AS gross_usd,
    sum(r.creator_share_usd)                                               AS creator_share_usd,
    sum(r.platform_share_usd)                                              AS platform_share_usd,
    sum(r.gross_usd) FILTER (WHERE r.revenue_stream = 'live_gifts')        AS gifts_usd,
    sum(r.gross_usd) FILTER (WHERE r.revenue_stream = 'ecommerce')         AS ecommerce_usd,
    sum(r.gross_usd) FILTER (WHERE r.revenue_stream = 'dou_plus')          AS dou_plus_usd
FROM marts.creator_revenue_daily AS r
JOIN staging.stg_creators AS c USING (creator_id)
CROSS JOIN last_day
WHERE r.day > last_day.d - 7
GROUP BY r.creator_id
ORDER BY gross_usd DESC, r.creator_id
LIMIT 20;
