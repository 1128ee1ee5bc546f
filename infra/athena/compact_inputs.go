package athena

import _ "embed"

// CompactInputs is compact_inputs.sql: what the compaction of one day (${DAY})
// read, per events object, for its manifest.
//
//go:embed compact_inputs.sql
var CompactInputs string
