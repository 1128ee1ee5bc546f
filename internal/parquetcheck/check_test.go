package parquetcheck_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/meter-dev/meter/internal/parquetcheck"
)

// plainRow has the shape that broke Athena: a dictionary string column
// beside plain ones.
type plainRow struct {
	RequestID string `parquet:"request_id,plain"`
	TeamID    string `parquet:"team_id,dict"`
	Tokens    int64  `parquet:"input_tokens,plain"`
}

// pageIndex is a file's page index, one entry per column chunk (row groups
// in order, columns in order), decoded so a test can break it.
type pageIndex struct {
	md  *format.FileMetaData
	cis []*format.ColumnIndex
	ois []*format.OffsetIndex
	// bodies are the compressed body sizes of each chunk's data pages, from
	// their headers.
	bodies [][]int32
}

// chunk returns the flat index of column col in the first row group.
func (x *pageIndex) chunk(col string) int {
	for i, cc := range x.md.RowGroups[0].Columns {
		if cc.MetaData.PathInSchema[len(cc.MetaData.PathInSchema)-1] == col {
			return i
		}
	}
	panic("no column " + col)
}

// writeFile writes n rows with a correct page index (8 KiB pages, so every
// column has many pages), lets edit break the decoded index, and writes the
// file again with the edited index.
func writeFile(t testing.TB, n int, edit func(x *pageIndex)) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[plainRow](&buf, parquet.PageBufferSize(8<<10), parquet.DataPageVersion(1),
		parquet.DataPageStatistics(true), parquet.ColumnIndexSizeLimit(func([]string) int { return math.MaxInt32 }))
	teams := []string{"team-analytics", "team-billing", "team-core", "team-data", "team-edge", "team-search", "team-voice"}
	rows := make([]plainRow, n)
	for i := range rows {
		rows[i] = plainRow{RequestID: fmt.Sprintf("req-%08d", i), TeamID: teams[(i/1000)%len(teams)], Tokens: int64(i % 4096)}
	}
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	file := buf.Bytes()
	if edit == nil {
		return file
	}
	proto := new(thrift.CompactProtocol)
	flen := int(binary.LittleEndian.Uint32(file[len(file)-8:]))
	x := &pageIndex{md: new(format.FileMetaData)}
	if err := thrift.Unmarshal(proto, file[len(file)-8-flen:len(file)-8], x.md); err != nil {
		t.Fatal(err)
	}
	first := int64(len(file) - 8 - flen)
	for _, rg := range x.md.RowGroups {
		for _, cc := range rg.Columns {
			if cc.ColumnIndexLength == 0 || cc.OffsetIndexLength == 0 {
				t.Fatal("the writer wrote no page index")
			}
			ci, oi := new(format.ColumnIndex), new(format.OffsetIndex)
			if err := thrift.Unmarshal(proto, file[cc.ColumnIndexOffset:cc.ColumnIndexOffset+int64(cc.ColumnIndexLength)], ci); err != nil {
				t.Fatal(err)
			}
			if err := thrift.Unmarshal(proto, file[cc.OffsetIndexOffset:cc.OffsetIndexOffset+int64(cc.OffsetIndexLength)], oi); err != nil {
				t.Fatal(err)
			}
			first = min(first, cc.ColumnIndexOffset, cc.OffsetIndexOffset)
			var bodies []int32
			for _, loc := range oi.PageLocations {
				var h format.PageHeader
				if err := thrift.NewDecoder(proto.NewReaderFromBytes(file[loc.Offset:])).Decode(&h); err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, h.CompressedPageSize)
			}
			x.cis, x.ois, x.bodies = append(x.cis, ci), append(x.ois, oi), append(x.bodies, bodies)
		}
	}
	edit(x)
	// Column indexes of all chunks first, then offset indexes, then the footer.
	out := append([]byte(nil), file[:first]...)
	i := 0
	for _, rg := range x.md.RowGroups {
		for c := range rg.Columns {
			b, err := thrift.Marshal(proto, x.cis[i])
			if err != nil {
				t.Fatal(err)
			}
			rg.Columns[c].ColumnIndexOffset, rg.Columns[c].ColumnIndexLength = int64(len(out)), int32(len(b))
			out = append(out, b...)
			i++
		}
	}
	i = 0
	for _, rg := range x.md.RowGroups {
		for c := range rg.Columns {
			b, err := thrift.Marshal(proto, x.ois[i])
			if err != nil {
				t.Fatal(err)
			}
			rg.Columns[c].OffsetIndexOffset, rg.Columns[c].OffsetIndexLength = int64(len(out)), int32(len(b))
			out = append(out, b...)
			i++
		}
	}
	footer, err := thrift.Marshal(proto, x.md)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, footer...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(footer)))
	return append(out, "PAR1"...)
}

// breakLikeXitongsys breaks the index the way xitongsys/parquet-go v1.6.2
// writes it on every file: page sizes without the header, and a ColumnIndex
// entry for the dictionary page, so every bound is a page off.
func breakLikeXitongsys(x *pageIndex) {
	for i, oi := range x.ois {
		for k := range oi.PageLocations {
			oi.PageLocations[k].CompressedPageSize = x.bodies[i][k]
		}
		if x.md.RowGroups[0].Columns[i%len(x.md.RowGroups[0].Columns)].MetaData.DictionaryPageOffset > 0 {
			ci := x.cis[i]
			ci.NullPages = append([]bool{false}, ci.NullPages...)
			ci.MinValues = append([][]byte{ci.MinValues[0]}, ci.MinValues...)
			ci.MaxValues = append([][]byte{ci.MaxValues[len(ci.MaxValues)-1]}, ci.MaxValues...)
			if len(ci.NullCounts) > 0 {
				ci.NullCounts = append([]int64{0}, ci.NullCounts...)
			}
		}
	}
}

func TestCheckRejectsXitongsysIndex(t *testing.T) {
	file := writeFile(t, 300_000, breakLikeXitongsys)
	err := parquetcheck.Check(bytes.NewReader(file), int64(len(file)))
	if err == nil {
		t.Fatal("Check passed a page index broken the way xitongsys/parquet-go v1.6.2 writes it")
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

// TestCheckCatchesEachDefect starts from a correct index, which must pass,
// and breaks one thing at a time.
func TestCheckCatchesEachDefect(t *testing.T) {
	cases := []struct {
		name string
		edit func(x *pageIndex)
		want string // "" means the file must pass
	}{
		{"index as written", func(x *pageIndex) {}, ""},
		{"bounds shifted a page", func(x *pageIndex) {
			ci := x.cis[x.chunk("request_id")]
			copy(ci.MinValues[1:], ci.MinValues[:len(ci.MinValues)-1])
			copy(ci.MaxValues[1:], ci.MaxValues[:len(ci.MaxValues)-1])
		}, `column "request_id" page 1: column index min "req-00000000", page statistics min`},
		{"first_row_index off by one", func(x *pageIndex) {
			x.ois[x.chunk("input_tokens")].PageLocations[3].FirstRowIndex++
		}, `column "input_tokens" page 3: first_row_index`},
		{"offset not at a page header", func(x *pageIndex) {
			x.ois[x.chunk("request_id")].PageLocations[5].Offset += 2
		}, `column "request_id" page 5: offset index says offset`},
		{"page marked all-null", func(x *pageIndex) {
			ci := x.cis[x.chunk("request_id")]
			ci.NullPages[2], ci.MinValues[2], ci.MaxValues[2] = true, []byte{}, []byte{}
		}, `column "request_id" page 2: marked all-null`},
		{"a page left out", func(x *pageIndex) {
			oi := x.ois[x.chunk("input_tokens")]
			oi.PageLocations = oi.PageLocations[:len(oi.PageLocations)-1]
		}, `column "input_tokens": offset index has`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, 20_000, tc.edit)
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
