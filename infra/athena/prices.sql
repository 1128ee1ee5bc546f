-- Athena (engine v3) table over the price file given to `meter compact --prices`.
-- Upload the CSV alone under its own folder, e.g. s3://BUCKET/PREFIX/prices/prices.csv
-- (`meter compact --engine athena` writes the file it compacts with there itself).
-- Columns are positional, in the order of the shipped file
-- (aggregator/pricing/default_prices.csv); every column is read as a string and
-- converted in infra/athena/compact.sql, which also skips the header and
-- comment lines, so the file is used exactly as meter reads it.
-- The shipped layout has no region column: its prices apply in every region.

CREATE EXTERNAL TABLE IF NOT EXISTS prices (
  model_id string,
  effective_from string,
  input_per_1k string,
  output_per_1k string,
  pricing_tier string,
  cache_read_per_1k string,
  cache_write_per_1k string,
  per_image string,
  image_max_pixels string,
  image_quality string,
  image_max_steps string,
  source string
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'
WITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '"')
STORED AS TEXTFILE
LOCATION 's3://BUCKET/PREFIX/prices/';
