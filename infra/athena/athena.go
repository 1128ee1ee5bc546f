// Package athena holds the Athena (engine v3) SQL that ships with meter: the
// tables' DDL with partition projection, finance's queries, and the daily
// compaction as SQL. The files are the source; this package embeds them so the
// code that prints or tests them reads the same bytes.
package athena

import _ "embed"

// Tables is tables.sql: the events, usage_windows and daily tables.
//
//go:embed tables.sql
var Tables string

// Prices is prices.sql: the prices table over the price CSV.
//
//go:embed prices.sql
var Prices string

// Queries is queries.sql: the queries finance runs most, each after a "-- name:" line.
//
//go:embed queries.sql
var Queries string

// Compact is compact.sql: the daily compaction of one day (${DAY}) as SQL.
//
//go:embed compact.sql
var Compact string

// Witnesses is witnesses.sql: the Bedrock invocation log and CUR 2.0 export
// tables, and the finance queries joining them to meter's.
//
//go:embed witnesses.sql
var Witnesses string
