package schemas

import _ "embed"

// EventJSONSchema is the JSON Schema (draft 2020-12) of the usage event v1.
//
//go:embed event.schema.json
var EventJSONSchema []byte
