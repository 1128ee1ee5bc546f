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
	return writeXitongsys(t, n, nil)
}

// writeXitongsys is writePlainXitongsys with a hook that may edit the collected
// page index after the last row group is flushed and before WriteStop writes it.
func writeXitongsys(t testing.TB, n int, edit func(pw *xwriter.ParquetWriter)) []byte {
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
	if edit != nil {
		if err := pw.Flush(true); err != nil {
			t.Fatal(err)
		}
		edit(pw)
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
		`column "team_id"`,        // the dictionary column is named
		"dictionary page",         // its ColumnIndex has the dictionary page's entry
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

// fixIndex corrects what v1.6.2 gets wrong for flat columns: sizes without the
// page header, and the dictionary page's entry in the ColumnIndex.
func fixIndex(pw *xwriter.ParquetWriter) {
	i := 0
	for _, rg := range pw.Footer.RowGroups {
		for _, cc := range rg.Columns {
			md, ci, oi := cc.MetaData, pw.ColumnIndexes[i], pw.OffsetIndexes[i]
			i++
			start := md.DataPageOffset
			if md.DictionaryPageOffset != nil {
				start = *md.DictionaryPageOffset
				ci.NullPages, ci.MinValues, ci.MaxValues = ci.NullPages[1:], ci.MinValues[1:], ci.MaxValues[1:]
			}
			locs := oi.PageLocations
			for k, loc := range locs {
				next := start + md.TotalCompressedSize
				if k+1 < len(locs) {
					next = locs[k+1].Offset
				}
				loc.CompressedPageSize = int32(next - loc.Offset)
			}
		}
	}
}

// chunk returns the index of the column of Go field col in the first row
// group (before WriteStop, paths hold the field names).
func chunk(pw *xwriter.ParquetWriter, col string) int {
	for i, cc := range pw.Footer.RowGroups[0].Columns {
		if cc.MetaData.PathInSchema[len(cc.MetaData.PathInSchema)-1] == col {
			return i
		}
	}
	panic("no column " + col)
}

// TestCheckCatchesEachDefect starts from a correctly fixed index, which must
// pass, and breaks one thing at a time.
func TestCheckCatchesEachDefect(t *testing.T) {
	cases := []struct {
		name string
		edit func(pw *xwriter.ParquetWriter)
		want string // "" means the file must pass
	}{
		{"fixed index", func(pw *xwriter.ParquetWriter) {}, ""},
		{"bounds shifted a page", func(pw *xwriter.ParquetWriter) {
			ci := pw.ColumnIndexes[chunk(pw, "TeamID")]
			copy(ci.MinValues[1:], ci.MinValues[:len(ci.MinValues)-1])
			copy(ci.MaxValues[1:], ci.MaxValues[:len(ci.MaxValues)-1])
		}, `column index min "team-analytics", page statistics min "team-billing"`},
		{"first_row_index off by one", func(pw *xwriter.ParquetWriter) {
			pw.OffsetIndexes[chunk(pw, "Tokens")].PageLocations[3].FirstRowIndex++
		}, `column "input_tokens" page 3: first_row_index`},
		{"offset not at a page header", func(pw *xwriter.ParquetWriter) {
			pw.OffsetIndexes[chunk(pw, "RequestID")].PageLocations[5].Offset += 2
		}, `column "request_id" page 5: offset index says offset`},
		{"page marked all-null", func(pw *xwriter.ParquetWriter) {
			ci := pw.ColumnIndexes[chunk(pw, "TeamID")]
			ci.NullPages[2], ci.MinValues[2], ci.MaxValues[2] = true, []byte{}, []byte{}
		}, `column "team_id" page 2: marked all-null`},
		{"a page left out", func(pw *xwriter.ParquetWriter) {
			oi := pw.OffsetIndexes[chunk(pw, "Tokens")]
			oi.PageLocations = oi.PageLocations[:len(oi.PageLocations)-1]
		}, `column "input_tokens": offset index has`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeXitongsys(t, 20_000, func(pw *xwriter.ParquetWriter) {
				fixIndex(pw)
				tc.edit(pw)
			})
			err := parquetcheck.Check(bytes.NewReader(file), int64(len(file)))
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && err == nil:
				t.Fatalf("Check passed; want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error does not contain %q:\n%v", tc.want, err)
			}
		})
	}
}
