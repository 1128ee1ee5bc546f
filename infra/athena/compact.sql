-- Daily compaction in Athena (engine v3): the chargeback of one day, computed
-- as `meter compact --engine go` computes it. Replace ${DAY} with the day
-- (YYYY-MM-DD); `meter compact --engine athena --day D` runs it (and an UNLOAD
-- of its priced rows into the daily table); with --print-sql it prints it.
-- Tables: events (infra/athena/tables.sql) and prices (infra/athena/prices.sql).
--
-- The result has the chargeback CSV's columns in order, sorted like it, with
-- two differences: revision is 0 (revisions are numbered by meter when it
-- commits a manifest), and unpriced_calls counts successful calls with no
-- price in force. As in the Go engine, those calls are left out of every
-- other column (never billed at a silent zero); a row whose counts are all
-- zero holds only such calls, and is no chargeback row.
--
-- Money is exact: costs are DECIMAL, tokens * price / 1000 written as
-- tokens * price * 0.001 so the scale grows (13 places) instead of rounding.
-- Assumption shared with the price file: the rows of one model that take
-- effect at the same time (image sizes and qualities) carry the same token prices.
WITH day_events AS (
  SELECT *
  FROM events
  WHERE dt = '${DAY}'
    AND CAST("timestamp" AS timestamp) >= TIMESTAMP '${DAY} 00:00:00'
    AND CAST("timestamp" AS timestamp) < TIMESTAMP '${DAY} 00:00:00' + INTERVAL '1' DAY
),
ranked AS (
  -- The same call delivered twice counts once: the earliest delivery.
  SELECT *, row_number() OVER (PARTITION BY request_id ORDER BY "timestamp", event_id) AS rn
  FROM day_events
),
dedup AS (
  SELECT
    request_id, team_id, cost_center, model_id, status,
    CAST("timestamp" AS timestamp) AS ts,
    schema_version, event_id, operation, latency_ms, api_key_id, region, pricing_tier, model_alias,
    input_tokens, output_tokens, cache_read_input_tokens, cache_write_input_tokens,
    image_count, image_height, image_width, image_steps, image_quality,
    COALESCE(NULLIF(pricing_tier, ''), 'on_demand') AS tier,
    -- Inference profiles and foundation-model ARNs bill as their base model.
    CASE
      WHEN model_id LIKE 'arn:%' AND strpos(model_id, ':foundation-model/') > 0
        THEN substr(model_id, strpos(model_id, ':foundation-model/') + 18)
      ELSE regexp_replace(model_id, '^(us|eu|apac|global|us-gov|ca|jp|au)\.', '')
    END AS base_model
  FROM ranked
  WHERE rn = 1
),
price_rows AS (
  SELECT
    trim(model_id) AS p_model,
    CAST(from_iso8601_timestamp(
      CASE WHEN length(trim(effective_from)) = 10 THEN trim(effective_from) || 'T00:00:00Z' ELSE trim(effective_from) END
    ) AS timestamp) AS p_from,
    COALESCE(NULLIF(trim(pricing_tier), ''), 'on_demand') AS p_tier,
    CAST(NULLIF(trim(input_per_1k), '') AS DECIMAL(18, 10)) AS input_per_1k,
    CAST(NULLIF(trim(output_per_1k), '') AS DECIMAL(18, 10)) AS output_per_1k,
    CAST(NULLIF(trim(cache_read_per_1k), '') AS DECIMAL(18, 10)) AS cache_read_per_1k,
    CAST(NULLIF(trim(cache_write_per_1k), '') AS DECIMAL(18, 10)) AS cache_write_per_1k,
    CAST(NULLIF(trim(per_image), '') AS DECIMAL(18, 10)) AS per_image,
    COALESCE(CAST(NULLIF(trim(image_max_pixels), '') AS bigint), 0) AS image_max_pixels,
    COALESCE(trim(image_quality), '') AS p_quality,
    COALESCE(CAST(NULLIF(trim(image_max_steps), '') AS bigint), 0) AS image_max_steps
  FROM prices
  WHERE model_id NOT LIKE '#%' AND trim(model_id) <> 'model_id'
),
candidates AS (
  -- Price rows that could apply to a successful call; only those cost money.
  SELECT
    d.request_id, d.image_count, d.image_height, d.image_width, d.image_steps, d.image_quality,
    p.*,
    CASE WHEN p.p_model = d.model_id THEN 0 ELSE 1 END AS id_rank
  FROM dedup d
  JOIN price_rows p
    ON p.p_model IN (d.model_id, d.base_model) AND p.p_tier = d.tier AND p.p_from <= d.ts
  WHERE d.status = 'success'
),
in_force AS (
  -- The rows in force: the exact id before its base model, then the latest effective_from.
  SELECT *
  FROM (
    SELECT c.*, dense_rank() OVER (PARTITION BY request_id ORDER BY id_rank, p_from DESC) AS vr
    FROM candidates c
  ) v
  WHERE vr = 1
),
token_rates AS (
  SELECT request_id,
    max(input_per_1k) AS input_per_1k, max(output_per_1k) AS output_per_1k,
    max(cache_read_per_1k) AS cache_read_per_1k, max(cache_write_per_1k) AS cache_write_per_1k
  FROM in_force
  GROUP BY request_id
),
image_rates AS (
  -- Images: the tightest row whose quality, size and step limits hold.
  SELECT request_id, per_image
  FROM (
    SELECT request_id, per_image,
      row_number() OVER (PARTITION BY request_id ORDER BY
        CASE WHEN image_max_pixels > 0 THEN image_max_pixels ELSE 4611686018427387904 END,
        CASE WHEN image_max_steps > 0 THEN image_max_steps ELSE 4611686018427387904 END,
        CASE WHEN p_quality <> '' THEN 0 ELSE 1 END) AS ir
    FROM in_force
    WHERE image_count > 0 AND per_image IS NOT NULL
      AND (p_quality = '' OR lower(p_quality) = lower(image_quality))
      AND (image_max_pixels = 0 OR image_height * image_width <= image_max_pixels)
      AND (image_max_steps = 0 OR image_steps <= image_max_steps)
  ) i
  WHERE ir = 1
),
priced AS (
  SELECT
    d.team_id, d.cost_center, d.model_id, d.status, d.tier,
    -- The rest of the event, for the daily table (meter compact --engine athena).
    d.request_id, d.ts, d.schema_version, d.event_id, d.operation, d.latency_ms, d.image_height, d.image_width,
    d.image_steps, d.image_quality, d.api_key_id, d.region, d.pricing_tier, d.model_alias,
    d.input_tokens, d.output_tokens, d.cache_read_input_tokens, d.cache_write_input_tokens, d.image_count,
    CAST(d.input_tokens AS DECIMAL(12, 0)) * r.input_per_1k * DECIMAL '0.001' AS input_cost,
    CAST(d.output_tokens AS DECIMAL(12, 0)) * r.output_per_1k * DECIMAL '0.001' AS output_cost,
    CASE WHEN d.cache_read_input_tokens = 0 THEN DECIMAL '0'
      ELSE CAST(d.cache_read_input_tokens AS DECIMAL(12, 0)) * r.cache_read_per_1k * DECIMAL '0.001' END AS cache_read_cost,
    CASE WHEN d.cache_write_input_tokens = 0 THEN DECIMAL '0'
      ELSE CAST(d.cache_write_input_tokens AS DECIMAL(12, 0)) * r.cache_write_per_1k * DECIMAL '0.001' END AS cache_write_cost,
    CASE WHEN d.image_count = 0 THEN DECIMAL '0'
      ELSE CAST(d.image_count AS DECIMAL(12, 0)) * i.per_image END AS image_cost
  FROM dedup d
  LEFT JOIN token_rates r ON r.request_id = d.request_id
  LEFT JOIN image_rates i ON i.request_id = d.request_id
),
flagged AS (
  SELECT *,
    status = 'success' AND (input_cost IS NULL OR output_cost IS NULL OR cache_read_cost IS NULL
      OR cache_write_cost IS NULL OR image_cost IS NULL) AS unpriced
  FROM priced
),
groups AS (
  SELECT
    team_id, cost_center, model_id,
    sum(CASE WHEN status = 'success' AND NOT unpriced THEN 1 ELSE 0 END) AS invocations,
    sum(CASE WHEN status = 'success' AND NOT unpriced THEN input_tokens ELSE 0 END) AS input_tokens,
    sum(CASE WHEN status = 'success' AND NOT unpriced THEN output_tokens ELSE 0 END) AS output_tokens,
    COALESCE(sum(CASE WHEN status = 'success' AND NOT unpriced THEN input_cost END), 0) AS input_cost,
    COALESCE(sum(CASE WHEN status = 'success' AND NOT unpriced THEN output_cost END), 0) AS output_cost,
    sum(CASE WHEN status = 'success' AND NOT unpriced THEN cache_read_input_tokens ELSE 0 END) AS cache_read_input_tokens,
    sum(CASE WHEN status = 'success' AND NOT unpriced THEN cache_write_input_tokens ELSE 0 END) AS cache_write_input_tokens,
    COALESCE(sum(CASE WHEN status = 'success' AND NOT unpriced THEN cache_read_cost END), 0) AS cache_read_cost,
    COALESCE(sum(CASE WHEN status = 'success' AND NOT unpriced THEN cache_write_cost END), 0) AS cache_write_cost,
    sum(CASE WHEN status = 'success' AND NOT unpriced THEN image_count ELSE 0 END) AS image_count,
    COALESCE(sum(CASE WHEN status = 'success' AND NOT unpriced THEN image_cost END), 0) AS image_cost,
    sum(CASE WHEN status = 'denied' THEN 1 ELSE 0 END) AS denied,
    sum(CASE WHEN status = 'throttled' THEN 1 ELSE 0 END) AS throttled,
    sum(CASE WHEN status NOT IN ('success', 'denied', 'throttled') THEN 1 ELSE 0 END) AS errors,
    sum(CASE WHEN unpriced THEN 1 ELSE 0 END) AS unpriced_calls
  FROM flagged
  GROUP BY team_id, cost_center, model_id
)
SELECT
  '${DAY}' AS day, team_id, cost_center, model_id, invocations, input_tokens, output_tokens,
  input_cost, output_cost,
  input_cost + output_cost + cache_read_cost + cache_write_cost + image_cost AS total_cost,
  cache_read_input_tokens, cache_write_input_tokens, cache_read_cost, cache_write_cost,
  image_count, image_cost, denied, throttled, errors,
  0 AS revision,
  unpriced_calls
FROM groups
ORDER BY team_id, cost_center, model_id
