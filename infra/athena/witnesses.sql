-- AWS's own records of Bedrock use, as Athena (engine v3) tables beside meter's,
-- and the finance queries that join them (meter reconcile --invocation-logs and
-- --bill do the same in Go and write reconciliation/dt=D/tokens-D.csv,
-- reconciliation/dt=D/bill-D.csv and chargeback/dt=D/allocated-D.csv).
-- Replace LOGBUCKET/LOGPREFIX, ACCOUNT and REGION with the invocation logging
-- destination, BILLBUCKET/BILLPREFIX/EXPORT with the CUR 2.0 export's, and
-- s3://BUCKET/PREFIX with meter's --store (tables.sql).

-- Bedrock model invocation logs: gzipped JSON lines Bedrock delivers under
-- AWSLogs/ACCOUNT/BedrockModelInvocationLogs/REGION/YYYY/MM/DD/HH/. The JSON
-- SerDe matches the lower-case columns to the records' camelCase keys.
CREATE EXTERNAL TABLE IF NOT EXISTS bedrock_invocation_logs (
  schematype string,
  schemaversion string,
  `timestamp` string,
  accountid string,
  identity struct<arn:string>,
  region string,
  requestid string,
  operation string,
  modelid string,
  inferenceregion string,
  errorcode string,
  input struct<inputcontenttype:string, inputtokencount:bigint, cachereadinputtokencount:bigint, cachewriteinputtokencount:bigint>,
  output struct<outputcontenttype:string, outputtokencount:bigint>,
  requestmetadata map<string,string>
)
PARTITIONED BY (day string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('case.insensitive' = 'true')
LOCATION 's3://LOGBUCKET/LOGPREFIX/AWSLogs/ACCOUNT/BedrockModelInvocationLogs/REGION/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.day.type' = 'date',
  'projection.day.format' = 'yyyy/MM/dd',
  'projection.day.range' = '2024/01/01,NOW',
  'projection.day.interval' = '1',
  'projection.day.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://LOGBUCKET/LOGPREFIX/AWSLogs/ACCOUNT/BedrockModelInvocationLogs/REGION/${day}/'
);

-- A CUR 2.0 data export (table COST_AND_USAGE_REPORT) in Parquet, partitioned
-- by billing period as Data Exports writes it: EXPORT/data/BILLING_PERIOD=YYYY-MM/.
-- Only the columns the queries use; Athena reads the others' absence as null.
CREATE EXTERNAL TABLE IF NOT EXISTS cur2 (
  identity_line_item_id string,
  bill_billing_period_start_date timestamp,
  line_item_usage_account_id string,
  line_item_line_item_type string,
  line_item_usage_start_date timestamp,
  line_item_usage_end_date timestamp,
  line_item_product_code string,
  line_item_usage_type string,
  line_item_operation string,
  line_item_resource_id string,
  line_item_iam_principal string,
  line_item_usage_amount double,
  line_item_unblended_cost double,
  line_item_net_unblended_cost double,
  pricing_unit string
)
PARTITIONED BY (billing_period string)
STORED AS PARQUET
LOCATION 's3://BILLBUCKET/BILLPREFIX/EXPORT/data/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.billing_period.type' = 'date',
  'projection.billing_period.format' = 'yyyy-MM',
  'projection.billing_period.range' = '2024-01,NOW',
  'projection.billing_period.interval' = '1',
  'projection.billing_period.interval.unit' = 'MONTHS',
  'storage.location.template' = 's3://BILLBUCKET/BILLPREFIX/EXPORT/data/BILLING_PERIOD=${billing_period}/'
);

-- name: tokens_vs_invocation_logs
-- Per request of a day: meter's tokens beside Bedrock's, and whether the
-- request metadata names the same event and team. Rows that agree are left out.
SELECT
  coalesce(d.request_id, l.requestid) AS request_id,
  d.team_id, d.cost_center, d.model_id, d.event_id,
  l.requestmetadata['event_id'] AS logged_event_id,
  d.input_tokens, l.input.inputtokencount AS logged_input_tokens,
  d.output_tokens, l.output.outputtokencount AS logged_output_tokens,
  d.cache_read_input_tokens, l.input.cachereadinputtokencount AS logged_cache_read_input_tokens,
  d.cache_write_input_tokens, l.input.cachewriteinputtokencount AS logged_cache_write_input_tokens,
  CASE
    WHEN d.request_id IS NULL THEN 'unmetered'
    WHEN l.requestid IS NULL THEN 'unconfirmed'
    ELSE 'mismatched'
  END AS status
FROM (SELECT * FROM daily WHERE dt = '2026-11-20' AND status = 'success') d
FULL OUTER JOIN (
  SELECT * FROM bedrock_invocation_logs
  WHERE day BETWEEN '2026/11/19' AND '2026/11/21'
    AND substr(`timestamp`, 1, 10) = '2026-11-20'
) l ON l.requestid = d.request_id
WHERE d.request_id IS NULL OR l.requestid IS NULL
   OR d.input_tokens <> coalesce(l.input.inputtokencount, 0)
   OR d.output_tokens <> coalesce(l.output.outputtokencount, 0)
   OR d.cache_read_input_tokens <> coalesce(l.input.cachereadinputtokencount, 0)
   OR d.cache_write_input_tokens <> coalesce(l.input.cachewriteinputtokencount, 0)
   OR d.event_id <> coalesce(l.requestmetadata['event_id'], d.event_id)
ORDER BY request_id;

-- name: bill_by_usage_type
-- The day's Bedrock lines per usage type: billed tokens (usage lines) and
-- dollars net of discounts and credits (every line but tax). meter reconcile
-- --bill maps usage types to model and token type and sets these beside the
-- daily table's sums (bill-D.csv).
SELECT
  line_item_usage_type,
  CASE
    WHEN line_item_usage_type LIKE '%-cache-read-input-token-count' THEN 'cache_read'
    WHEN line_item_usage_type LIKE '%-cache-write-input-token-count' THEN 'cache_write'
    WHEN line_item_usage_type LIKE '%-output-tokens' OR line_item_usage_type LIKE '%-mantle-output-tokens%' THEN 'output'
    WHEN line_item_usage_type LIKE '%-input-tokens' OR line_item_usage_type LIKE '%-mantle-input-tokens%' THEN 'input'
    WHEN line_item_usage_type LIKE '%-images' THEN 'image'
    ELSE 'other'
  END AS token_type,
  line_item_usage_type LIKE '%-cross-region-%' OR line_item_usage_type LIKE '%-global-%' AS cross_region,
  sum(CASE WHEN line_item_line_item_type IN ('Usage', 'DiscountedUsage', 'SavingsPlanCoveredUsage') THEN line_item_usage_amount ELSE 0 END) AS billed_tokens,
  sum(CAST(coalesce(line_item_net_unblended_cost, line_item_unblended_cost) AS decimal(24, 10))) AS billed_cost
FROM cur2
WHERE billing_period = '2026-11'
  AND line_item_product_code = 'AmazonBedrock'
  AND line_item_line_item_type <> 'Tax'
  AND line_item_usage_start_date >= timestamp '2026-11-20 00:00:00'
  AND line_item_usage_start_date < timestamp '2026-11-21 00:00:00'
GROUP BY 1, 2, 3
ORDER BY 1;

-- name: team_share_of_the_bill
-- Finance's view joining the two: each team's list-price cost of a model and,
-- beside it, the model's billed cost of the day in proportion (before the
-- cent rounding meter's allocated-D.csv applies). The model is matched to the
-- bill through the invocation logs: each request's billed model as Bedrock
-- logged it, grouped per day.
WITH metered AS (
  SELECT d.team_id, d.cost_center, regexp_replace(d.model_id, '^(us|eu|apac|global|us-gov|ca|jp|au)\.', '') AS model,
         sum(d.total_cost) AS list_cost
  FROM daily d
  JOIN bedrock_invocation_logs l
    ON l.requestid = d.request_id AND l.day BETWEEN '2026/11/19' AND '2026/11/21'
  WHERE d.dt = '2026-11-20' AND d.status = 'success'
  GROUP BY 1, 2, 3
),
billed AS (
  SELECT regexp_extract(line_item_resource_id, 'foundation-model/(.*)$', 1) AS model,
         sum(CAST(coalesce(line_item_net_unblended_cost, line_item_unblended_cost) AS decimal(24, 10))) AS billed_cost
  FROM cur2
  WHERE billing_period = '2026-11' AND line_item_product_code = 'AmazonBedrock' AND line_item_line_item_type <> 'Tax'
    AND line_item_usage_start_date >= timestamp '2026-11-20 00:00:00'
    AND line_item_usage_start_date < timestamp '2026-11-21 00:00:00'
    AND line_item_resource_id LIKE '%foundation-model/%'
  GROUP BY 1
)
SELECT m.team_id, m.cost_center, m.model, m.list_cost, b.billed_cost AS model_billed_cost,
       b.billed_cost * m.list_cost / sum(m.list_cost) OVER (PARTITION BY m.model) AS share_of_bill
FROM metered m
LEFT JOIN billed b ON b.model = m.model
ORDER BY m.model, m.team_id, m.cost_center;
