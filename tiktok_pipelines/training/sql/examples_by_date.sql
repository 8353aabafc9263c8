-- Per impression date of the examples (${source}): examples, and the engaged, played and finished rates.
SELECT event_date::VARCHAR AS event_date, count(*) AS examples, avg(engaged::INT) AS engaged,
       avg(played::INT) AS played, avg(finished::INT) AS finished
FROM ${source}
GROUP BY 1
ORDER BY 1
