-- Audience segments (age band x gender x country x interest category) that convert best on ads:
-- share of reached users who converted, with enough reach to mean something (>= 5 users).
SELECT
    age_band,
    gender,
    country,
    interest_category,
    users,
    ad_reach,
    converting_users,
    round(conversion_rate, 4)          AS conversion_rate,
    round(ctr, 4)                      AS ctr,
    round(purchase_value_cents / 100, 2) AS purchase_value_usd
FROM marts.audience_segments
WHERE ad_reach >= 5 AND converting_users > 0
ORDER BY conversion_rate DESC, ad_reach DESC
LIMIT 25;
