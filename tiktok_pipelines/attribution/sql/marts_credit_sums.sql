-- Per model (every model given as the one parameter, credited or not): its credited conversions
-- and value, and its rows with a negative credit.
SELECT m.model,
       coalesce(sum(c.credited_conversions), 0) AS conversions,
       coalesce(sum(c.credited_value_cents), 0) AS value_cents,
       count(c.model) FILTER (WHERE c.credited_conversions < 0 OR c.credited_value_cents < 0) AS negative_rows
FROM unnest(?::VARCHAR[]) AS m(model)
LEFT JOIN marts.attribution_credits AS c USING (model)
GROUP BY m.model
ORDER BY m.model
