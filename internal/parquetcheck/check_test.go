package parquetcheck_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/xitongsys/parquet-go-source/writerfile"
	xwriter "github.com/xitongsys/parquet-go/writer"

	"github.com/meter-dev/meter/internal/parquetcheck"
)

// plainRow has the shape that breaks Athena: a dictionary string column
// beside plain ones.
type plainRow struct {
	RequestID string `parquet:"name=request_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN"`
	TeamID    string `parquet:"name=team_id, type=BYTE_ARRAY, convertedtype=UTF8, encoding=PLAIN_DICTIONARY"`
	Tokens    int64  `parquet:"name=input_tokens, type=INT64"`
}

// writePlainXitongsys writes rows the way xitongsys/parquet-go v1.6.2 does on
// its own (Write, then WriteStop), with its default 8 KiB pages so that every
// column has many pages and therefore a non-trivial page index.
func writePlainXitongsys(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	pw, err := xwriter.NewParquetWriter(writerfile.NewWriterFile(&buf), new(plainRow), 1)
	if err != nil {
		t.Fatal(err)
	}
	teams := []string{"team-analytics", "team-billing", "team-core", "team-data", "team-edge", "team-search", "team-voice"}
	for i := 0; i < n; i++ {
		row := plainRow{
			RequestID: fmt.Sprintf("req-%08d", i),
			TeamID:    teams[(i/1000)%len(teams)],
			Tokens:    int64(i % 4096),
		}
		if err := pw.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := pw.WriteStop(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCheckRejectsPlainXitongsysIndex(t *testing.T) {
	file := writePlainXitongsys(t, 300_000)
	err := parquetcheck.Check(bytes.NewReader(file), int64(len(file)))
	if err == nil {
		t.Fatal("Check passed a file whose page index v1.6.2 wrote without repair")
	}
	msg := err.Error()
	t.Logf("%.1500s", msg)
	for _, want := range []string{
		`column "team_id"`,       // the dictionary column is named
		"dictionary page",        // its ColumnIndex has the dictionary page's entry
		"page header is left out", // every compressed_page_size misses the header
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q", want)
		}
	}
}

// Arrow's pqarrow writes no page index: a file without one is valid.
func TestCheckPassesFileWithoutIndex(t *testing.T) {
	sc := arrow.NewSchema([]arrow.Field{{Name: "team_id", Type: arrow.BinaryTypes.String}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i := 0; i < 10_000; i++ {
		b.Field(0).(*array.StringBuilder).Append(fmt.Sprintf("team-%d", i%7))
	}
	rec := b.NewRecord()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(sc, &buf, nil, pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := parquetcheck.Check(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
}

func TestCheckRejectsNonParquet(t *testing.T) {
	junk := []byte("this is not a parquet file at all")
	if err := parquetcheck.Check(bytes.NewReader(junk), int64(len(junk))); err == nil {
		t.Fatal("Check passed a file without Parquet magic")
	}
}
