package meterstack

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2/awsglue"
	"github.com/aws/jsii-runtime-go"

	"github.com/meter-dev/meter/infra/athena"
)

// Column is one column of a Glue table: its name and Hive type.
type Column struct{ Name, Type string }

// Table is one table of infra/athena/tables.sql as Glue needs it.
type Table struct {
	Name       string
	Columns    []Column
	Partitions []Column
	// Properties are the table's TBLPROPERTIES (partition projection), with
	// s3://BUCKET/PREFIX still to be replaced by the store.
	Properties map[string]string
	// Folder is the table's folder under the store (events/, usage_windows/, daily/).
	Folder string
}

var (
	pricesRE   = regexp.MustCompile(`(?s)CREATE EXTERNAL TABLE IF NOT EXISTS (prices) \((.*?)\n\)\s*ROW FORMAT SERDE '([^']+)'\s*WITH SERDEPROPERTIES \((.*?)\)\s*STORED AS TEXTFILE\s*LOCATION 's3://BUCKET/PREFIX/([a-z_]+/)'`)
	tableRE    = regexp.MustCompile(`(?s)CREATE EXTERNAL TABLE IF NOT EXISTS (\w+) \((.*?)\n\)\s*PARTITIONED BY \((.*?)\)\s*STORED AS PARQUET\s*LOCATION 's3://BUCKET/PREFIX/([a-z_]+/)'\s*TBLPROPERTIES \((.*?)\);`)
	propertyRE = regexp.MustCompile(`'([^']+)'\s*=\s*'([^']*)'`)
)

// GlueTables reads the tables of the shipped Athena DDL (infra/athena/tables.sql),
// the one source of the tables' columns, partitions and projection.
func GlueTables() ([]Table, error) {
	var out []Table
	for _, m := range tableRE.FindAllStringSubmatch(athena.Tables, -1) {
		t := Table{Name: m[1], Folder: m[4], Properties: map[string]string{}}
		var err error
		if t.Columns, err = columns(m[2]); err != nil {
			return nil, fmt.Errorf("infra/athena/tables.sql %s: %w", t.Name, err)
		}
		if t.Partitions, err = columns(m[3]); err != nil {
			return nil, fmt.Errorf("infra/athena/tables.sql %s partitions: %w", t.Name, err)
		}
		for _, p := range propertyRE.FindAllStringSubmatch(m[5], -1) {
			t.Properties[p[1]] = p[2]
		}
		out = append(out, t)
	}
	if len(out) != 3 {
		return nil, fmt.Errorf("infra/athena/tables.sql: found %d tables, want events, usage_windows and daily", len(out))
	}
	return out, nil
}

// PricesTable reads the prices table of infra/athena/prices.sql: the price
// CSV as Athena reads it when it compacts a day (meter compact --engine
// athena writes the file under the store's prices/ folder).
func PricesTable() (Table, []string, error) {
	m := pricesRE.FindStringSubmatch(athena.Prices)
	if m == nil {
		return Table{}, nil, fmt.Errorf("infra/athena/prices.sql: no CREATE EXTERNAL TABLE prices ... STORED AS TEXTFILE LOCATION")
	}
	t := Table{Name: m[1], Folder: m[5], Properties: map[string]string{}}
	var err error
	if t.Columns, err = columns(m[2]); err != nil {
		return Table{}, nil, fmt.Errorf("infra/athena/prices.sql: %w", err)
	}
	for _, p := range propertyRE.FindAllStringSubmatch(m[4], -1) {
		t.Properties[p[1]] = p[2]
	}
	return t, []string{m[3]}, nil
}

func columns(body string) ([]Column, error) {
	var out []Column
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSuffix(strings.TrimSpace(line), ",")
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("column %q: want NAME TYPE, one a line", line)
		}
		out = append(out, Column{Name: strings.Trim(f[0], "`"), Type: f[1]})
	}
	return out, nil
}

// catalog creates the Glue database and the tables over the store, with
// partition projection on dt (no crawler, no MSCK REPAIR). It returns the
// database's name.
func (b *builder) catalog(tables []Table) string {
	name := strings.ReplaceAll(strings.ToLower(b.cfg.StackName), "-", "_")
	db := awsglue.NewCfnDatabase(b.stack, jsii.String("Database"), &awsglue.CfnDatabaseProps{
		CatalogId: jsii.String(b.cfg.Account),
		DatabaseInput: &awsglue.CfnDatabase_DatabaseInputProperty{Name: jsii.String(name),
			Description: jsii.String("meter usage: raw events, window aggregates, compacted daily events")},
	})
	store := b.s3URI(StorePrefix)
	for _, t := range tables {
		params := map[string]*string{"classification": jsii.String("parquet"), "EXTERNAL": jsii.String("TRUE")}
		for k, v := range t.Properties {
			params[k] = jsii.String(strings.ReplaceAll(v, "s3://BUCKET/PREFIX", store))
		}
		col := func(cs []Column) *[]any {
			out := make([]any, len(cs))
			for i, c := range cs {
				out[i] = &awsglue.CfnTable_ColumnProperty{Name: jsii.String(c.Name), Type: jsii.String(c.Type)}
			}
			return &out
		}
		tbl := awsglue.NewCfnTable(b.stack, jsii.String("Table-"+t.Name), &awsglue.CfnTableProps{
			CatalogId: jsii.String(b.cfg.Account), DatabaseName: jsii.String(name),
			TableInput: &awsglue.CfnTable_TableInputProperty{
				Name: jsii.String(t.Name), TableType: jsii.String("EXTERNAL_TABLE"), Parameters: params,
				PartitionKeys: col(t.Partitions),
				StorageDescriptor: &awsglue.CfnTable_StorageDescriptorProperty{
					Columns: col(t.Columns), Location: jsii.String(store + "/" + t.Folder),
					InputFormat:  jsii.String("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"),
					OutputFormat: jsii.String("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"),
					SerdeInfo:    &awsglue.CfnTable_SerdeInfoProperty{SerializationLibrary: jsii.String("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")},
				},
			},
		})
		tbl.Node().AddDependency(db)
	}
	if prices, serde, err := PricesTable(); err == nil {
		cols := make([]any, len(prices.Columns))
		for i, c := range prices.Columns {
			cols[i] = &awsglue.CfnTable_ColumnProperty{Name: jsii.String(c.Name), Type: jsii.String(c.Type)}
		}
		serdeParams := map[string]*string{}
		for k, v := range prices.Properties {
			serdeParams[k] = jsii.String(v)
		}
		tbl := awsglue.NewCfnTable(b.stack, jsii.String("Table-prices"), &awsglue.CfnTableProps{
			CatalogId: jsii.String(b.cfg.Account), DatabaseName: jsii.String(name),
			TableInput: &awsglue.CfnTable_TableInputProperty{
				Name: jsii.String(prices.Name), TableType: jsii.String("EXTERNAL_TABLE"),
				Parameters: map[string]*string{"classification": jsii.String("csv"), "EXTERNAL": jsii.String("TRUE")},
				StorageDescriptor: &awsglue.CfnTable_StorageDescriptorProperty{
					Columns: &cols, Location: jsii.String(store + "/" + prices.Folder),
					InputFormat:  jsii.String("org.apache.hadoop.mapred.TextInputFormat"),
					OutputFormat: jsii.String("org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"),
					SerdeInfo:    &awsglue.CfnTable_SerdeInfoProperty{SerializationLibrary: jsii.String(serde[0]), Parameters: serdeParams},
				},
			},
		})
		tbl.Node().AddDependency(db)
	} else {
		panic(err) // the shipped DDL is embedded and tested
	}
	return name
}
