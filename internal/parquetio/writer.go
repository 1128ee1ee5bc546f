// Package parquetio writes and reads the store's Parquet files: the rows of
// schemas.EventRow, schemas.WindowRow and schemas.DailyRow, or any flat struct
// with the same xitongsys/parquet-go struct tags.
//
// Files are written for Athena (engine v3, Trino), the reader finance uses. It
// trusts the page index (ColumnIndex and OffsetIndex) when it filters with `=`,
// so a file must never carry an index that disagrees with its pages. The writer
// is xitongsys/parquet-go v1.6.2, whose own index is wrong on every file (page
// sizes without the header, ColumnIndex entries shifted by the dictionary page);
// Writer repairs that index before the footer is written and leaves out the index
// of any column chunk it cannot prove right. A file without an index is valid.
// parquetcheck.CheckFile verifies the result the way a strict reader relies on it.
//
// Reading goes through Apache Arrow's pqarrow, column by column.
//
// This package does no network I/O and keeps no package-level state; it never
// writes a page index it has not checked against the pages' own offsets.
package parquetio

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/xitongsys/parquet-go-source/writerfile"
	xparquet "github.com/xitongsys/parquet-go/parquet"
	xwriter "github.com/xitongsys/parquet-go/writer"
)

// Compression names a page compression codec.
type Compression string

// The codecs Athena, DuckDB and Arrow all read.
const (
	Snappy Compression = "snappy"
	Zstd   Compression = "zstd"
)

// Defaults for Options' zero values.
const (
	// DefaultRowGroupBytes keeps row groups in the size Athena splits and
	// prunes well (tens to hundreds of MB), not thousands of tiny groups.
	DefaultRowGroupBytes = 128 << 20
	// DefaultPageBytes is the uncompressed value bytes per page, as parquet-mr
	// writes by default: small enough for the page index to skip most of a
	// column chunk on an `=` filter, large enough to compress well.
	DefaultPageBytes = 1 << 20
)

// Options tune a Writer. The zero value is ready to use.
type Options struct {
	// Compression is the page codec: Snappy (default) or Zstd.
	Compression Compression
	// RowGroupBytes closes a row group once its compressed pages reach this
	// size; default DefaultRowGroupBytes.
	RowGroupBytes int64
	// PageBytes closes a page once its values reach this many bytes before
	// encoding and compression; default DefaultPageBytes.
	PageBytes int64
}

func (o Options) codec() (xparquet.CompressionCodec, error) {
	switch o.Compression {
	case "", Snappy:
		return xparquet.CompressionCodec_SNAPPY, nil
	case Zstd:
		return xparquet.CompressionCodec_ZSTD, nil
	}
	return 0, fmt.Errorf("parquetio: unknown compression %q (want %q or %q)", o.Compression, Snappy, Zstd)
}

// Writer streams rows of type T into one Parquet file. It buffers at most one
// row group in memory. A Writer is not safe for concurrent use.
type Writer[T any] struct {
	buf    *bufio.Writer
	pw     *xwriter.ParquetWriter
	err    error
	closed bool
}

// NewWriter starts a Parquet file on w for rows of the struct type T, whose
// fields carry xitongsys/parquet-go tags. Close must be called to finish the
// file; it does not close w.
func NewWriter[T any](w io.Writer, opts Options) (*Writer[T], error) {
	var zero T
	if t := reflect.TypeOf(zero); t == nil || t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("parquetio: row type %T is not a struct", zero)
	}
	codec, err := opts.codec()
	if err != nil {
		return nil, err
	}
	if opts.RowGroupBytes <= 0 {
		opts.RowGroupBytes = DefaultRowGroupBytes
	}
	if opts.PageBytes <= 0 {
		opts.PageBytes = DefaultPageBytes
	}
	if opts.PageBytes > math.MaxInt32/2 {
		return nil, fmt.Errorf("parquetio: page size %d too large", opts.PageBytes)
	}
	buf := bufio.NewWriterSize(w, 1<<20)
	// One marshalling goroutine: with more, dictionary ids and page boundaries
	// depend on scheduling, and a retried write would not reproduce the file.
	pw, err := xwriter.NewParquetWriter(writerfile.NewWriterFile(buf), new(T), 1)
	if err != nil {
		return nil, fmt.Errorf("parquetio: schema of %T: %w", zero, err)
	}
	if marshal, ok := flatMarshal[T](pw.SchemaHandler); ok {
		pw.MarshalFunc = marshal
	}
	pw.CompressionType = codec
	pw.RowGroupSize = opts.RowGroupBytes
	pw.PageSize = opts.PageBytes
	return &Writer[T]{buf: buf, pw: pw}, nil
}

// Write adds one row.
func (w *Writer[T]) Write(row T) error {
	if w.closed {
		return errors.New("parquetio: write after close")
	}
	if w.err != nil {
		return w.err
	}
	if err := w.pw.Write(row); err != nil {
		w.err = fmt.Errorf("parquetio: writing row: %w", err)
	}
	return w.err
}

// Close writes the last row group, the repaired page index and the footer, and
// flushes everything to the underlying writer. It does not close that writer.
func (w *Writer[T]) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	w.err = w.finish()
	return w.err
}

// Write writes rows as one complete Parquet file to w.
func Write[T any](w io.Writer, rows []T, opts Options) error {
	pw, err := NewWriter[T](w, opts)
	if err != nil {
		return err
	}
	for i := range rows {
		if err := pw.Write(rows[i]); err != nil {
			return err
		}
	}
	return pw.Close()
}

// finish replaces ParquetWriter.WriteStop. WriteStop serialises every
// collected ColumnIndex and OffsetIndex as is, and indexes them by position, so
// it can neither write repaired entries for some chunks nor leave out others.
// The steps are otherwise WriteStop's: flush the last row group, rename the
// schema to the tag names, write the indexes, the footer, its length and the magic.
func (w *Writer[T]) finish() error {
	pw := w.pw
	if err := pw.Flush(true); err != nil {
		return fmt.Errorf("parquetio: flushing last row group: %w", err)
	}
	keep := repairPageIndex(pw)
	pw.RenameSchema()
	normalizeSchema(pw.Footer.Schema)

	// TYPE_ORDER is what parquet-mr writes: min/max of strings are compared as
	// unsigned bytes (Go's string order, which the writer's statistics use).
	for _, el := range pw.Footer.Schema {
		if el.GetNumChildren() == 0 && el.Type != nil {
			pw.Footer.ColumnOrders = append(pw.Footer.ColumnOrders,
				&xparquet.ColumnOrder{TYPE_ORDER: xparquet.NewTypeDefinedOrder()})
		}
	}

	ts := thrift.NewTSerializer()
	ts.Protocol = thrift.NewTCompactProtocolFactory().GetProtocol(ts.Transport)
	ctx := context.Background()
	write := func(b []byte) error {
		_, err := pw.PFile.Write(b)
		pw.Offset += int64(len(b))
		return err
	}

	// Column indexes of all chunks first, then offset indexes, as parquet-mr lays them out.
	for pass := 0; pass < 2; pass++ {
		idx := 0
		for _, rg := range pw.Footer.RowGroups {
			for _, cc := range rg.Columns {
				i := idx
				idx++
				if !keep[i] {
					continue
				}
				var st thrift.TStruct = pw.ColumnIndexes[i]
				if pass == 1 {
					st = pw.OffsetIndexes[i]
				}
				b, err := ts.Write(ctx, st)
				if err != nil {
					return fmt.Errorf("parquetio: encoding page index: %w", err)
				}
				off, n := pw.Offset, int32(len(b))
				if pass == 0 {
					cc.ColumnIndexOffset, cc.ColumnIndexLength = &off, &n
				} else {
					cc.OffsetIndexOffset, cc.OffsetIndexLength = &off, &n
				}
				if err := write(b); err != nil {
					return fmt.Errorf("parquetio: writing page index: %w", err)
				}
			}
		}
	}

	footer, err := ts.Write(ctx, pw.Footer)
	if err != nil {
		return fmt.Errorf("parquetio: encoding footer: %w", err)
	}
	tail := binary.LittleEndian.AppendUint32(nil, uint32(len(footer)))
	tail = append(tail, "PAR1"...)
	if err := write(append(footer, tail...)); err != nil {
		return fmt.Errorf("parquetio: writing footer: %w", err)
	}
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("parquetio: writing file: %w", err)
	}
	return nil
}

// normalizeSchema tidies two things v1.6.2 writes into the schema, after the
// last page is written (page statistics were ordered by then):
//   - scale and precision on every leaf, though the format defines them only
//     for DECIMAL; they are removed from the others;
//   - TIMESTAMP(isAdjustedToUTC=true, MILLIS) without the matching converted
//     type TIMESTAMP_MILLIS, which the format asks writers to add for readers
//     that predate logical types.
func normalizeSchema(els []*xparquet.SchemaElement) {
	for _, el := range els {
		if el.GetNumChildren() > 0 || el.Type == nil {
			continue
		}
		decimal := el.ConvertedType != nil && *el.ConvertedType == xparquet.ConvertedType_DECIMAL ||
			el.LogicalType != nil && el.LogicalType.DECIMAL != nil
		if !decimal {
			el.Scale, el.Precision = nil, nil
		}
		if lt := el.LogicalType; lt != nil && lt.TIMESTAMP != nil && el.ConvertedType == nil &&
			lt.TIMESTAMP.IsAdjustedToUTC && lt.TIMESTAMP.Unit != nil && lt.TIMESTAMP.Unit.MILLIS != nil {
			ct := xparquet.ConvertedType_TIMESTAMP_MILLIS
			el.ConvertedType = &ct
		}
	}
}
