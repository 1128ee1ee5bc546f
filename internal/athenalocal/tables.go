package athenalocal

import (
	"strings"

	"github.com/meter-dev/meter/infra/athena"
)

// MeterTables returns the statements of infra/athena/tables.sql and
// prices.sql for a store at location (s3://BUCKET/PREFIX), one per element,
// as an operator runs them in Athena.
func MeterTables(location string) []string {
	location = strings.TrimSuffix(location, "/")
	var out []string
	for _, file := range []string{athena.Tables, athena.Prices} {
		file = strings.ReplaceAll(file, "s3://BUCKET/PREFIX", location)
		for _, stmt := range strings.Split(file, ";\n") {
			if s := stripComments(stmt); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
