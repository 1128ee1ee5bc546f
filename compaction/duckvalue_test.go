package compaction_test

import (
	"fmt"
	"math/big"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// duckString renders a value scanned from DuckDB: decimals exactly.
func duckString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case duckdb.Decimal:
		return x.String()
	case *big.Int:
		return x.String()
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}
