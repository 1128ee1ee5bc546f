// Package parquetcheck validates a Parquet file's page index the way a strict
// reader relies on it. Athena (engine v3, Trino) trusts the ColumnIndex and
// OffsetIndex of a column chunk to skip pages on `=` filters; DuckDB and Arrow
// ignore them, so "DuckDB reads it" proves nothing about Athena.
//
// Check walks the real page headers of every column chunk that has an index and
// compares them with the index: one OffsetIndex entry per data page and none for
// dictionary pages, each offset at a page header, each size including that
// header, first_row_index from 0 following the pages' row counts, and one
// ColumnIndex entry per data page whose bounds equal the page's own statistics
// and whose null_pages agree with them. A file with no index passes.
//
// Tests that write Parquet call the helper:
//
//	if err := parquetcheck.CheckFile(path); err != nil {
//		t.Fatal(err)
//	}
//
// This package only reads; it never repairs a file.
package parquetcheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/brotli"
	"github.com/parquet-go/parquet-go/compress/gzip"
	"github.com/parquet-go/parquet-go/compress/lz4"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/uncompressed"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/encoding/rle"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// A broken writer breaks every page of every chunk the same way, and the first
// few problems say what is wrong: an error lists at most maxPerChunk problems
// of each index of a column chunk and maxProblems in all, and counts the rest.
const (
	maxProblems = 30
	maxPerChunk = 3
)

// CheckFile runs Check on the file at path.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := Check(f, st.Size()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Check validates the page index of the Parquet file of size bytes read from r.
// The error lists the problems found, each naming the row group, column and page.
func Check(r io.ReaderAt, size int64) error {
	md, err := readFooter(r, size)
	if err != nil {
		return err
	}
	leaves, err := leafColumns(md.Schema)
	if err != nil {
		return err
	}
	c := &checker{r: r, size: size}
	for g := range md.RowGroups {
		rg := &md.RowGroups[g]
		if len(rg.Columns) != len(leaves) {
			c.problemf("row group %d: %d column chunks, schema has %d columns", g, len(rg.Columns), len(leaves))
			continue
		}
		for i := range rg.Columns {
			c.checkChunk(g, rg.NumRows, &rg.Columns[i], leaves[i])
		}
	}
	return c.err()
}

type checker struct {
	r        io.ReaderAt
	size     int64
	problems []string
	more     int
	inChunk  int // problems of the chunk being checked
}

func (c *checker) problemf(format string, args ...any) {
	c.inChunk++
	if len(c.problems) == maxProblems || c.inChunk > maxPerChunk {
		c.more++
		return
	}
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func (c *checker) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	msg := "inconsistent page index:\n  " + strings.Join(c.problems, "\n  ")
	if c.more > 0 {
		msg += fmt.Sprintf("\n  ... and %d more problems", c.more)
	}
	return errors.New(msg)
}

func (c *checker) read(off int64, n int64, what string) ([]byte, error) {
	if off < 4 || n < 0 || off+n > c.size-8 {
		return nil, fmt.Errorf("%s at [%d, %d) is outside the file's data (size %d)", what, off, off+n, c.size)
	}
	b := make([]byte, n)
	if _, err := c.r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return b, nil
}

func readFooter(r io.ReaderAt, size int64) (*format.FileMetaData, error) {
	if size < 12 {
		return nil, fmt.Errorf("not a Parquet file: %d bytes", size)
	}
	var head, tail [8]byte
	if _, err := r.ReadAt(head[:4], 0); err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return nil, fmt.Errorf("reading footer: %w", err)
	}
	if string(head[:4]) != "PAR1" || string(tail[4:]) != "PAR1" {
		return nil, errors.New("not a Parquet file: no PAR1 magic")
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if n <= 0 || n > size-12 {
		return nil, fmt.Errorf("footer length %d does not fit a %d-byte file", n, size)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, size-8-n); err != nil {
		return nil, fmt.Errorf("reading footer: %w", err)
	}
	md := new(format.FileMetaData)
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), buf, md); err != nil {
		return nil, fmt.Errorf("decoding footer: %w", err)
	}
	return md, nil
}

// leaf is a column of the schema: its dotted path and levels.
type leaf struct {
	path   string
	typ    format.Type
	maxRep int
	maxDef int
}

func leafColumns(sc []format.SchemaElement) ([]leaf, error) {
	var out []leaf
	i := 0
	var walk func(prefix string, rep, def int) error
	walk = func(prefix string, rep, def int) error {
		if i >= len(sc) {
			return errors.New("schema ends early")
		}
		el := &sc[i]
		i++
		if rt, ok := el.RepetitionType.Get(); ok {
			switch rt {
			case format.Optional:
				def++
			case format.Repeated:
				rep++
				def++
			}
		}
		path := el.Name
		if prefix != "" {
			path = prefix + "." + el.Name
		}
		n, _ := el.NumChildren.Get()
		if n == 0 {
			t, _ := el.Type.Get()
			out = append(out, leaf{path: path, typ: t, maxRep: rep, maxDef: def})
			return nil
		}
		for k := int32(0); k < n; k++ {
			if err := walk(path, rep, def); err != nil {
				return err
			}
		}
		return nil
	}
	if len(sc) == 0 {
		return nil, errors.New("footer has no schema")
	}
	// The root names the schema, not a column, and has no repetition.
	root := &sc[0]
	i = 1
	n, _ := root.NumChildren.Get()
	for k := int32(0); k < n; k++ {
		if err := walk("", 0, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// page is one page header as found in the column chunk.
type page struct {
	offset    int64 // file offset of the header
	size      int64 // header plus compressed body
	header    format.PageHeader
	rows      int64 // -1 when it cannot be told
	values    int64
	nulls     int64 // -1 when unknown
	stats     *format.Statistics
	dataIndex int // position among data pages, -1 for others
}

func (p *page) isData() bool {
	return p.header.Type == format.DataPage || p.header.Type == format.DataPageV2
}

func (c *checker) checkChunk(g int, numRows int64, cc *format.ColumnChunk, col leaf) {
	hasOI, hasCI := cc.OffsetIndexLength > 0, cc.ColumnIndexLength > 0
	if !hasOI && !hasCI {
		return
	}
	where := fmt.Sprintf("row group %d column %q", g, col.path)
	c.inChunk = 0
	md := &cc.MetaData

	pages, err := c.walkPages(md, col)
	if err != nil {
		c.problemf("%s: %v", where, err)
		return
	}
	var data []*page
	var dictPages int
	for _, p := range pages {
		if p.isData() {
			p.dataIndex = len(data)
			data = append(data, p)
		} else if p.header.Type == format.DictionaryPage {
			dictPages++
		}
	}

	if hasOI {
		b, err := c.read(cc.OffsetIndexOffset, int64(cc.OffsetIndexLength), "offset index")
		var oi format.OffsetIndex
		if err == nil {
			err = thrift.Unmarshal(new(thrift.CompactProtocol), b, &oi)
		}
		if err != nil {
			c.problemf("%s: offset index: %v", where, err)
		} else {
			c.checkOffsetIndex(where, numRows, &oi, pages, data)
		}
	}
	if hasCI {
		c.inChunk = 0 // the column index gets its own share of the listing
		b, err := c.read(cc.ColumnIndexOffset, int64(cc.ColumnIndexLength), "column index")
		var ci format.ColumnIndex
		if err == nil {
			err = thrift.Unmarshal(new(thrift.CompactProtocol), b, &ci)
		}
		if err != nil {
			c.problemf("%s: column index: %v", where, err)
		} else {
			c.checkColumnIndex(where, col, &ci, data, dictPages)
		}
	}
}

// walkPages decodes every page header of the chunk, from its first page over
// total_compressed_size bytes.
func (c *checker) walkPages(md *format.ColumnMetaData, col leaf) ([]*page, error) {
	start := md.DataPageOffset
	if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < start {
		start = md.DictionaryPageOffset
	}
	buf, err := c.read(start, md.TotalCompressedSize, "column chunk")
	if err != nil {
		return nil, err
	}
	var pages []*page
	var values int64
	proto := new(thrift.CompactProtocol)
	for pos := int64(0); pos < int64(len(buf)); {
		rd := proto.NewReaderFromBytes(buf[pos:])
		p := &page{offset: start + pos, dataIndex: -1, rows: -1, nulls: -1}
		if err := thrift.NewDecoder(rd).Decode(&p.header); err != nil {
			return nil, fmt.Errorf("page header at offset %d: %w", p.offset, err)
		}
		hlen := int64(rd.BytesRead())
		body := int64(p.header.CompressedPageSize)
		p.size = hlen + body
		if body < 0 || pos+p.size > int64(len(buf)) {
			return nil, fmt.Errorf("page at offset %d: %d-byte body overruns the chunk (total_compressed_size %d)", p.offset, body, md.TotalCompressedSize)
		}
		if err := describe(p, buf[pos+hlen:pos+p.size], md.Codec, col); err != nil {
			return nil, fmt.Errorf("page at offset %d: %w", p.offset, err)
		}
		values += p.values
		pages = append(pages, p)
		pos += p.size
	}
	if values != md.NumValues {
		return nil, fmt.Errorf("pages hold %d values, column metadata says %d", values, md.NumValues)
	}
	return pages, nil
}

// describe fills in a page's value, row and null counts and statistics.
func describe(p *page, body []byte, codec format.CompressionCodec, col leaf) error {
	switch p.header.Type {
	case format.DataPage:
		h, ok := p.header.DataPageHeader.Get()
		if !ok {
			return errors.New("DATA_PAGE without data_page_header")
		}
		p.values = int64(h.NumValues)
		p.stats = &h.Statistics
		if hasStats(p.stats) {
			p.nulls = p.stats.NullCount
		}
		if col.maxRep == 0 {
			p.rows = p.values
			return nil
		}
		// Rows start where the repetition level is 0; v1 pages keep the
		// levels first in the compressed body.
		n, err := countRowStarts(body, codec, col.maxRep, p.values)
		if err != nil {
			return fmt.Errorf("repetition levels: %w", err)
		}
		p.rows = n
	case format.DataPageV2:
		h, ok := p.header.DataPageHeaderV2.Get()
		if !ok {
			return errors.New("DATA_PAGE_V2 without data_page_header_v2")
		}
		p.values, p.rows, p.nulls = int64(h.NumValues), int64(h.NumRows), int64(h.NumNulls)
		p.stats = &h.Statistics
	}
	return nil
}

func hasStats(s *format.Statistics) bool {
	return s != nil && (s.MinValue != nil || s.MaxValue != nil || s.Min != nil || s.Max != nil)
}

func countRowStarts(body []byte, codec format.CompressionCodec, maxRep int, values int64) (int64, error) {
	var cd compress.Codec
	switch codec {
	case format.Uncompressed:
		cd = new(uncompressed.Codec)
	case format.Snappy:
		cd = new(snappy.Codec)
	case format.Gzip:
		cd = new(gzip.Codec)
	case format.Zstd:
		cd = new(zstd.Codec)
	case format.Lz4Raw:
		cd = new(lz4.Codec)
	case format.Brotli:
		cd = new(brotli.Codec)
	default:
		return 0, fmt.Errorf("codec %s not supported", codec)
	}
	raw, err := cd.Decode(nil, body)
	if err != nil {
		return 0, err
	}
	if len(raw) < 4 {
		return 0, errors.New("page too short")
	}
	n := int(binary.LittleEndian.Uint32(raw))
	if n > len(raw)-4 {
		return 0, errors.New("level length overruns the page")
	}
	enc := rle.Encoding{BitWidth: bits.Len(uint(maxRep))}
	levels, err := enc.DecodeLevels(nil, raw[4:4+n])
	if err != nil {
		return 0, err
	}
	if int64(len(levels)) < values {
		return 0, fmt.Errorf("%d levels for %d values", len(levels), values)
	}
	var rows int64
	for _, l := range levels[:values] {
		if l == 0 {
			rows++
		}
	}
	return rows, nil
}

func (c *checker) checkOffsetIndex(where string, numRows int64, oi *format.OffsetIndex, pages, data []*page) {
	locs := oi.PageLocations
	if len(locs) != len(data) {
		hint := ""
		if len(locs) == len(pages) && len(pages) > len(data) {
			hint = " (it has entries for dictionary pages)"
		}
		c.problemf("%s: offset index has %d page locations, the chunk has %d data pages%s", where, len(locs), len(data), hint)
		return
	}
	byOffset := map[int64]*page{}
	for _, p := range pages {
		byOffset[p.offset] = p
	}
	var row int64
	for k, loc := range locs {
		p := data[k]
		at := fmt.Sprintf("%s page %d", where, k)
		if loc.Offset != p.offset {
			other := "no page header"
			if q, ok := byOffset[loc.Offset]; ok {
				other = "the header of a " + q.header.Type.String() + " page"
			}
			c.problemf("%s: offset index says offset %d (%s there), the page header is at %d", at, loc.Offset, other, p.offset)
		}
		if int64(loc.CompressedPageSize) != p.size {
			hint := ""
			if loc.CompressedPageSize == p.header.CompressedPageSize {
				hint = " (the page header is left out)"
			}
			c.problemf("%s: offset index says compressed_page_size %d, the page with its header is %d bytes%s", at, loc.CompressedPageSize, p.size, hint)
		}
		if p.rows < 0 {
			continue
		}
		if loc.FirstRowIndex != row {
			c.problemf("%s: first_row_index %d, the pages before it hold %d rows", at, loc.FirstRowIndex, row)
		}
		row += p.rows
	}
	if len(data) > 0 && data[len(data)-1].rows >= 0 && row != numRows {
		c.problemf("%s: data pages hold %d rows, the row group has %d", where, row, numRows)
	}
}

func (c *checker) checkColumnIndex(where string, col leaf, ci *format.ColumnIndex, data []*page, dictPages int) {
	n := len(data)
	if len(ci.NullPages) != n || len(ci.MinValues) != n || len(ci.MaxValues) != n {
		hint := ""
		if dictPages > 0 && len(ci.NullPages) == n+dictPages {
			hint = " (it has an entry for the dictionary page, so every bound is a page off)"
		}
		c.problemf("%s: column index has %d null_pages, %d min_values, %d max_values for %d data pages%s",
			where, len(ci.NullPages), len(ci.MinValues), len(ci.MaxValues), n, hint)
		return
	}
	if len(ci.NullCounts) != 0 && len(ci.NullCounts) != n {
		c.problemf("%s: column index has %d null_counts for %d data pages", where, len(ci.NullCounts), n)
	}
	for k, p := range data {
		at := fmt.Sprintf("%s page %d", where, k)
		min, max := ci.MinValues[k], ci.MaxValues[k]
		if ci.NullPages[k] {
			if len(min) != 0 || len(max) != 0 {
				c.problemf("%s: null page with bounds", at)
			}
			if p.nulls >= 0 && p.nulls != p.values {
				c.problemf("%s: marked all-null, the page has %d nulls in %d values", at, p.nulls, p.values)
			}
		} else {
			if p.nulls >= 0 && p.values > 0 && p.nulls == p.values {
				c.problemf("%s: the page holds only nulls, null_pages says it does not", at)
			}
			if !lessOrEqual(col.typ, min, max) {
				c.problemf("%s: min %x is greater than max %x", at, min, max)
			}
			pmin, pmax, ok := pageBounds(p.stats, col.typ)
			if ok && !bytes.Equal(min, pmin) {
				c.problemf("%s: column index min %s, page statistics min %s", at, show(col.typ, min), show(col.typ, pmin))
			}
			if ok && !bytes.Equal(max, pmax) {
				c.problemf("%s: column index max %s, page statistics max %s", at, show(col.typ, max), show(col.typ, pmax))
			}
		}
		if len(ci.NullCounts) == n && p.nulls >= 0 && ci.NullCounts[k] != p.nulls {
			c.problemf("%s: column index null_count %d, the page has %d", at, ci.NullCounts[k], p.nulls)
		}
	}
}

// pageBounds returns a page's own min and max, when its header has them in a
// form comparable byte for byte: min_value/max_value, or the deprecated
// min/max for types whose old order is the type's order (not byte arrays).
func pageBounds(s *format.Statistics, t format.Type) (min, max []byte, ok bool) {
	if s == nil {
		return nil, nil, false
	}
	if s.MinValue != nil && s.MaxValue != nil {
		return s.MinValue, s.MaxValue, true
	}
	if s.Min != nil && s.Max != nil && t != format.ByteArray && t != format.FixedLenByteArray {
		return s.Min, s.Max, true
	}
	return nil, nil, false
}

// lessOrEqual compares plain-encoded bounds in the type's order; types it does
// not know compare as equal.
func lessOrEqual(t format.Type, a, b []byte) bool {
	switch t {
	case format.Int32:
		if len(a) != 4 || len(b) != 4 {
			return false
		}
		return int32(binary.LittleEndian.Uint32(a)) <= int32(binary.LittleEndian.Uint32(b))
	case format.Int64:
		if len(a) != 8 || len(b) != 8 {
			return false
		}
		return int64(binary.LittleEndian.Uint64(a)) <= int64(binary.LittleEndian.Uint64(b))
	case format.ByteArray:
		return bytes.Compare(a, b) <= 0
	}
	return true
}

func show(t format.Type, v []byte) string {
	switch {
	case t == format.Int32 && len(v) == 4:
		return fmt.Sprint(int32(binary.LittleEndian.Uint32(v)))
	case t == format.Int64 && len(v) == 8:
		return fmt.Sprint(int64(binary.LittleEndian.Uint64(v)))
	case t == format.ByteArray:
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%x", v)
}
