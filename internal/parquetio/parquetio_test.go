package parquetio_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	pqfile "github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	pqschema "github.com/apache/arrow/go/v15/parquet/schema"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/meter-dev/meter/internal/parquetcheck"
	"github.com/meter-dev/meter/internal/parquetio"
	"github.com/meter-dev/meter/schemas"
)

var (
	teams   = []string{"team-analytics", "team-billing", "team-core", "team-data", "team-edge", "team-search", "team-voice"}
	centers = []string{"", "cc-100", "cc-200", "cc-300"}
	models  = []string{
		"anthropic.claude-3-5-sonnet-20240620-v1:0", "us.anthropic.claude-3-haiku-20240307-v1:0",
		"amazon.titan-embed-text-v2:0", "meta.llama3-70b-instruct-v1:0", "stability.sd3-large-v1:0",
		"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
	}
	day0 = time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC)
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func events(n int) []schemas.EventRow {
	r := rand.New(rand.NewPCG(1, 2))
	rows := make([]schemas.EventRow, n)
	for i := range rows {
		e := schemas.Event{
			SchemaVersion: 1, EventID: fmt.Sprintf("ev-%09d", i), RequestID: fmt.Sprintf("%08x-req-%d", r.Uint32(), i),
			Timestamp: day0.Add(time.Duration(i) * 250 * time.Millisecond), TeamID: pick(r, teams),
			CostCenter: pick(r, centers), ModelID: pick(r, models), Operation: pick(r, schemas.Operations),
			Status: pick(r, schemas.Statuses), InputTokens: r.Int64N(200_000), OutputTokens: r.Int64N(8_000),
			LatencyMS: r.Int64N(60_000), CacheReadInputTokens: r.Int64N(3) * r.Int64N(50_000),
			PricingTier: pick(r, []string{"", "on_demand", "batch", "provisioned"}), Region: pick(r, []string{"us-east-1", "eu-west-1"}),
			APIKeyID: fmt.Sprintf("key-%02d", r.IntN(40)),
		}
		if i%97 == 0 {
			e.ImageCount, e.ImageHeight, e.ImageWidth, e.ImageSteps, e.ImageQuality = 2, 1024, 1024, 50, "premium"
		}
		rows[i] = schemas.NewEventRow(&e)
	}
	return rows
}

func daily(n int) []schemas.DailyRow {
	ev := events(n)
	r := rand.New(rand.NewPCG(3, 4))
	rows := make([]schemas.DailyRow, n)
	for i := range ev {
		e := ev[i].Event()
		rows[i] = schemas.NewDailyRow(&e, schemas.Costs{})
		rows[i].InputCost = r.Int64N(1e12)
		rows[i].OutputCost = r.Int64N(1e12)
		rows[i].ImageCost = 0
		rows[i].TotalCost = rows[i].InputCost + rows[i].OutputCost
	}
	// The extremes of DECIMAL(18,10): 99,999,999.9999999999 USD and one 10^-10.
	rows[0].TotalCost = 999_999_999_999_999_999
	rows[1].TotalCost = 1
	return rows
}

func windows(n int) []schemas.WindowRow {
	r := rand.New(rand.NewPCG(5, 6))
	rows := make([]schemas.WindowRow, n)
	for i := range rows {
		start := day0.Add(time.Duration(i/50) * time.Minute)
		rows[i] = schemas.WindowRow{
			WindowStart: start.UnixMilli(), WindowEnd: start.Add(time.Minute).UnixMilli(),
			TeamID: pick(r, teams), CostCenter: pick(r, centers), ModelID: pick(r, models),
			Status: pick(r, schemas.Statuses), PricingTier: "on_demand", Requests: r.Int64N(1000),
			InputTokens: r.Int64N(1e9), OutputTokens: r.Int64N(1e7), LatencyMSSum: r.Int64N(1e8),
		}
	}
	return rows
}

// small pages give every column many pages, so the page index is exercised.
var smallPages = parquetio.Options{PageBytes: 4 << 10}

func writeFile[T any](t testing.TB, rows []T, opts parquetio.Options) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "part-0.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := parquetio.Write(f, rows, opts); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// indexPages returns, per column name, the number of pages the page index
// lists, summed over row groups; and the number of row groups.
func indexPages(t testing.TB, path string) (map[string]int, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.LittleEndian.Uint32(b[len(b)-8:]))
	var md format.FileMetaData
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), b[len(b)-8-n:len(b)-8], &md); err != nil {
		t.Fatal(err)
	}
	pages := map[string]int{}
	for _, rg := range md.RowGroups {
		for _, cc := range rg.Columns {
			name := strings.Join(cc.MetaData.PathInSchema, ".")
			if cc.OffsetIndexLength == 0 || cc.ColumnIndexLength == 0 {
				t.Errorf("column %s has no page index", name)
				continue
			}
			var oi format.OffsetIndex
			if err := thrift.Unmarshal(new(thrift.CompactProtocol), b[cc.OffsetIndexOffset:cc.OffsetIndexOffset+int64(cc.OffsetIndexLength)], &oi); err != nil {
				t.Fatal(err)
			}
			pages[name] += len(oi.PageLocations)
		}
	}
	return pages, len(md.RowGroups)
}

func TestWrittenFilesPassCheck(t *testing.T) {
	cases := []struct {
		name  string
		write func(t *testing.T) string
	}{
		{"events", func(t *testing.T) string { return writeFile(t, events(150_000), smallPages) }},
		{"events zstd, several row groups", func(t *testing.T) string {
			return writeFile(t, events(150_000), parquetio.Options{Compression: parquetio.Zstd, PageBytes: 4 << 10, RowGroupBytes: 1 << 20})
		}},
		{"daily", func(t *testing.T) string { return writeFile(t, daily(100_000), smallPages) }},
		{"windows", func(t *testing.T) string { return writeFile(t, windows(100_000), smallPages) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.write(t)
			if err := parquetcheck.CheckFile(path); err != nil {
				t.Fatal(err)
			}
			pages, groups := indexPages(t, path)
			t.Logf("%d row groups; pages in the index: team_id %d, model_id %d", groups, pages["team_id"], pages["model_id"])
			for _, col := range []string{"team_id", "model_id", "status"} {
				if pages[col] < 10 {
					t.Errorf("dictionary column %s has %d pages in the index, want many", col, pages[col])
				}
			}
		})
	}
}

func TestEmptyFile(t *testing.T) {
	path := writeFile[schemas.EventRow](t, nil, parquetio.Options{})
	if err := parquetcheck.CheckFile(path); err != nil {
		t.Fatal(err)
	}
	rows, err := parquetio.ReadFile[schemas.EventRow](path)
	if err != nil || len(rows) != 0 {
		t.Fatalf("got %d rows, err %v", len(rows), err)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Run("events", func(t *testing.T) {
		want := events(60_000)
		path := writeFile(t, want, parquetio.Options{PageBytes: 4 << 10, RowGroupBytes: 512 << 10})
		f := open(t, path)
		got, err := parquetio.ReadEvents(f, size(t, f))
		if err != nil {
			t.Fatal(err)
		}
		equalRows(t, got, want)
		e := got[97].Event()
		if e.ImageQuality != "premium" || !e.Timestamp.Equal(day0.Add(97*250*time.Millisecond)) {
			t.Errorf("event 97 read back as %+v", e)
		}
	})
	t.Run("daily", func(t *testing.T) {
		want := daily(20_000)
		path := writeFile(t, want, parquetio.Options{Compression: parquetio.Zstd})
		f := open(t, path)
		got, err := parquetio.ReadDaily(f, size(t, f))
		if err != nil {
			t.Fatal(err)
		}
		equalRows(t, got, want)
	})
	t.Run("windows", func(t *testing.T) {
		want := windows(20_000)
		var buf bytes.Buffer
		w, err := parquetio.NewWriter[schemas.WindowRow](&buf, smallPages)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range want {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := parquetio.ReadWindows(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		equalRows(t, got, want)
	})
}

func equalRows[T any](t *testing.T, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d rows, wrote %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("row %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func open(t *testing.T, path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func size(t *testing.T, f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// jsonNames lists the JSON field names of the usage event, in order.
func jsonNames() []string {
	var names []string
	ty := reflect.TypeFor[schemas.Event]()
	for i := 0; i < ty.NumField(); i++ {
		name, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

// TestArrowSchema reads the written files' schemas the way Arrow (and Athena)
// see them: column names, timestamp and decimal annotations.
func TestArrowSchema(t *testing.T) {
	path := writeFile(t, daily(1000), parquetio.Options{})
	f := open(t, path)
	pf, err := pqfile.NewParquetReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := fr.Schema()
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, fd := range sc.Fields() {
		cols = append(cols, fd.Name)
	}
	want := append(jsonNames(), "input_cost", "output_cost", "cache_read_cost", "cache_write_cost", "image_cost", "total_cost")
	if !reflect.DeepEqual(cols, want) {
		t.Errorf("columns\n got %v\nwant %v", cols, want)
	}

	ps := pf.MetaData().Schema
	ts := ps.Column(ps.ColumnIndexByName("timestamp")).LogicalType()
	tl, ok := ts.(*pqschema.TimestampLogicalType)
	if !ok || !tl.IsAdjustedToUTC() || tl.TimeUnit() != pqschema.TimeUnitMillis {
		t.Errorf("timestamp logical type %v, want TIMESTAMP(isAdjustedToUTC=true, MILLIS)", ts)
	}
	// Readers that predate logical types see the converted type.
	if ct := ps.Column(ps.ColumnIndexByName("timestamp")).ConvertedType(); ct != pqschema.ConvertedTypes.TimestampMillis {
		t.Errorf("timestamp converted type %v, want TIMESTAMP_MILLIS", ct)
	}
	if dt := sc.Field(sc.FieldIndices("timestamp")[0]).Type; !arrow.TypeEqual(dt, &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}) {
		t.Errorf("arrow reads timestamp as %v", dt)
	}
	for _, name := range []string{"input_cost", "output_cost", "cache_read_cost", "cache_write_cost", "image_cost", "total_cost"} {
		lt := ps.Column(ps.ColumnIndexByName(name)).LogicalType()
		dl, ok := lt.(*pqschema.DecimalLogicalType)
		if !ok || dl.Precision() != 18 || dl.Scale() != schemas.MoneyScale {
			t.Errorf("%s logical type %v, want DECIMAL(18,10)", name, lt)
		}
	}
	for _, name := range []string{"team_id", "model_id", "event_id"} {
		if lt := ps.Column(ps.ColumnIndexByName(name)).LogicalType(); !lt.Equals(pqschema.StringLogicalType{}) {
			t.Errorf("%s logical type %v, want STRING", name, lt)
		}
	}
}

func TestReadRejectsMissingColumn(t *testing.T) {
	path := writeFile(t, windows(10), parquetio.Options{})
	_, err := parquetio.ReadFile[schemas.EventRow](path)
	if err == nil || !strings.Contains(err.Error(), "no column") {
		t.Fatalf("reading a windows file as events: err %v", err)
	}
}

func TestOptionsRejectUnknownCompression(t *testing.T) {
	if _, err := parquetio.NewWriter[schemas.EventRow](&bytes.Buffer{}, parquetio.Options{Compression: "lzo"}); err == nil {
		t.Fatal("unknown compression accepted")
	}
}

func BenchmarkWriteEvents(b *testing.B) {
	rows := events(100_000)
	b.ResetTimer()
	var n int
	for i := 0; i < b.N; i++ {
		var buf bytes.Buffer
		if err := parquetio.Write(&buf, rows, parquetio.Options{}); err != nil {
			b.Fatal(err)
		}
		n = buf.Len()
	}
	b.ReportMetric(float64(len(rows)*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(n), "file-bytes")
}

func BenchmarkReadEvents(b *testing.B) {
	rows := events(100_000)
	var buf bytes.Buffer
	if err := parquetio.Write(&buf, rows, parquetio.Options{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := parquetio.ReadEvents(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rows)*b.N)/b.Elapsed().Seconds(), "rows/s")
}
