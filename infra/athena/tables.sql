-- Athena (engine v3) tables over the meter store. Replace s3://BUCKET/PREFIX with
-- the --store location. Partition projection on dt: no MSCK REPAIR, no crawler.

CREATE EXTERNAL TABLE IF NOT EXISTS events (
  schema_version int,
  event_id string,
  request_id string,
  `timestamp` timestamp,
  team_id string,
  cost_center string,
  model_id string,
  operation string,
  status string,
  input_tokens bigint,
  output_tokens bigint,
  latency_ms bigint,
  cache_read_input_tokens bigint,
  cache_write_input_tokens bigint,
  image_count bigint,
  image_height bigint,
  image_width bigint,
  image_steps bigint,
  image_quality string,
  api_key_id string,
  region string,
  pricing_tier string,
  model_alias string
)
PARTITIONED BY (dt string)
STORED AS PARQUET
LOCATION 's3://BUCKET/PREFIX/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://BUCKET/PREFIX/events/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS usage_windows (
  window_start timestamp,
  window_end timestamp,
  team_id string,
  cost_center string,
  model_id string,
  status string,
  pricing_tier string,
  requests bigint,
  input_tokens bigint,
  output_tokens bigint,
  cache_read_input_tokens bigint,
  cache_write_input_tokens bigint,
  image_count bigint,
  latency_ms_sum bigint
)
PARTITIONED BY (dt string)
STORED AS PARQUET
LOCATION 's3://BUCKET/PREFIX/usage_windows/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://BUCKET/PREFIX/usage_windows/dt=${dt}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS daily (
  schema_version int,
  event_id string,
  request_id string,
  `timestamp` timestamp,
  team_id string,
  cost_center string,
  model_id string,
  operation string,
  status string,
  input_tokens bigint,
  output_tokens bigint,
  latency_ms bigint,
  cache_read_input_tokens bigint,
  cache_write_input_tokens bigint,
  image_count bigint,
  image_height bigint,
  image_width bigint,
  image_steps bigint,
  image_quality string,
  api_key_id string,
  region string,
  pricing_tier string,
  model_alias string,
  input_cost decimal(18,10),
  output_cost decimal(18,10),
  cache_read_cost decimal(18,10),
  cache_write_cost decimal(18,10),
  image_cost decimal(18,10),
  total_cost decimal(18,10)
)
PARTITIONED BY (dt string)
STORED AS PARQUET
LOCATION 's3://BUCKET/PREFIX/daily/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://BUCKET/PREFIX/daily/dt=${dt}/'
);
