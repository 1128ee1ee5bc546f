-- What the daily compaction in Athena read (`meter compact --engine athena`
-- runs it beside compact.sql and writes it into the manifest): per events
-- object of the day's partition its rows, and for the whole day the rows
-- dated on the day and their distinct request ids. Replace ${DAY} with the day.
WITH day_rows AS (
  SELECT "$path" AS path,
    CASE WHEN CAST("timestamp" AS timestamp) >= TIMESTAMP '${DAY} 00:00:00'
      AND CAST("timestamp" AS timestamp) < TIMESTAMP '${DAY} 00:00:00' + INTERVAL '1' DAY THEN 1 ELSE 0 END AS on_day,
    request_id
  FROM events
  WHERE dt = '${DAY}'
),
per_path AS (
  SELECT path, count(*) AS rows_read, sum(on_day) AS day_rows
  FROM day_rows
  GROUP BY path
),
ids AS (
  SELECT count(DISTINCT request_id) AS request_ids FROM day_rows WHERE on_day = 1
)
SELECT path, rows_read, day_rows, request_ids
FROM per_path CROSS JOIN ids
ORDER BY path
