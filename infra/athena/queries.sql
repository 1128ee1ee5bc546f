-- The queries finance runs most, over the compacted daily table (one row per
-- request_id, priced). Each query is separated by a line "-- name: NAME".

-- name: cost_per_team_per_day
SELECT dt, team_id, cost_center,
       count_if(status = 'success') AS invocations,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(total_cost) AS total_cost
FROM daily
WHERE dt BETWEEN '2026-11-01' AND '2026-11-30'
GROUP BY dt, team_id, cost_center
ORDER BY dt, team_id, cost_center;

-- name: cost_per_model
SELECT model_id,
       count_if(status = 'success') AS invocations,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(total_cost) AS total_cost
FROM daily
WHERE dt BETWEEN '2026-11-01' AND '2026-11-30'
GROUP BY model_id
ORDER BY total_cost DESC, model_id;

-- name: month_to_date
SELECT team_id, sum(total_cost) AS total_cost
FROM daily
WHERE dt >= '2026-11-01' AND dt <= '2026-11-30'
GROUP BY team_id
ORDER BY team_id;

-- name: team_usage_windows
SELECT window_start, model_id, status, sum(requests) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
FROM usage_windows
WHERE dt = '2026-11-25' AND team_id = 'team-a'
GROUP BY window_start, model_id, status
ORDER BY window_start, model_id, status;
