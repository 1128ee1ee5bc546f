// Package parquetio writes and reads the store's Parquet files: the rows of
// schemas.EventRow, schemas.WindowRow and schemas.DailyRow, or any flat struct
// whose fields carry the same parquet struct tags ("name=x, type=INT64, ...").
//
// Files are written for Athena (engine v3, Trino), the reader finance uses. It
// trusts the page index (ColumnIndex and OffsetIndex) when it filters with `=`,
// so a file must never carry an index that disagrees with its pages. The writer
// is github.com/parquet-go/parquet-go's generic writer, column by column with
// no value boxed: it writes a page index that agrees with the pages (one entry
// per data page, none for the dictionary page, sizes with the header) and the
// page statistics the index is checked against; parquetcheck.CheckFile
// verifies that the way a strict reader relies on it. BENCHMARKS.md
// ("One Parquet writer") has the measurements that chose it.
//
// Reading goes through Apache Arrow's pqarrow, column by column.
//
// This package does no network I/O; its only package-level state is the pool
// of ZSTD encoders its writers share.
package parquetio

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/snappy"
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
	// Compression is the page codec: Zstd (default) or Snappy.
	Compression Compression
	// RowGroupBytes closes a row group once its buffered pages reach this
	// size (an upper bound: pages are counted before compression of the
	// page being filled); default DefaultRowGroupBytes.
	RowGroupBytes int64
	// PageBytes closes a page once its values reach this many bytes before
	// encoding and compression; default DefaultPageBytes.
	PageBytes int64
}

func (o Options) codec() (compress.Codec, error) {
	switch o.Compression {
	case "", Zstd:
		return sharedZstd, nil
	case Snappy:
		return &snappy.Codec{}, nil
	}
	return nil, fmt.Errorf("parquetio: unknown compression %q (want %q or %q)", o.Compression, Zstd, Snappy)
}

// sharedZstd is the one ZSTD codec every writer uses, so that its pooled
// encoders (each holds its tables) are reused across files.
var sharedZstd = &zstdCodec{}

// batchRows is how many rows Writer.Write gathers before handing them to the
// column writers in one call.
const batchRows = 4096

// Writer streams rows of type T into one Parquet file. It buffers at most one
// row group in memory. A Writer is not safe for concurrent use.
type Writer[T any] struct {
	pw      *parquet.GenericWriter[T]
	batch   []T
	rgBytes int64
	rgStart int64 // pw.Size() when the current row group began
	err     error
	closed  bool
}

// NewWriter starts a Parquet file on w for rows of the struct type T, whose
// fields carry parquet tags. Close must be called to finish the file; it does
// not close w.
func NewWriter[T any](w io.Writer, opts Options) (*Writer[T], error) {
	var zero T
	t := reflect.TypeOf(zero)
	if t == nil || t.Kind() != reflect.Struct {
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
	tags, err := writerTags(t)
	if err != nil {
		return nil, err
	}
	wopts := []parquet.WriterOption{
		parquet.Compression(codec),
		parquet.PageBufferSize(int(opts.PageBytes)),
		// Version 1 data pages are what parquet-mr writes and every reader
		// (Athena v2 and v3 included) has read the longest.
		parquet.DataPageVersion(1),
		parquet.DataPageStatistics(true),
		parquet.CreatedBy("meter", "", ""),
		// Page bounds in the column index equal the pages' own statistics,
		// untruncated, as the strict check (and parquet-mr) has them. The
		// strings are ids and names the schemas bound to a few hundred bytes.
		parquet.ColumnIndexSizeLimit(func([]string) int { return math.MaxInt32 }),
		// A dictionary column whose values turn out not to repeat falls
		// back to plain pages once its dictionary passes 8 MiB.
		parquet.DictionaryMaxBytes(8 << 20),
	}
	for _, tg := range tags {
		wopts = append(wopts, parquet.StructTag(tg.tag, tg.field))
	}
	cfg, err := parquet.NewWriterConfig(wopts...)
	if err != nil {
		return nil, fmt.Errorf("parquetio: writer options: %w", err)
	}
	var pw *parquet.GenericWriter[T]
	if err := catch(func() { pw = parquet.NewGenericWriter[T](w, cfg) }); err != nil {
		return nil, fmt.Errorf("parquetio: schema of %T: %w", zero, err)
	}
	return &Writer[T]{pw: pw, rgBytes: opts.RowGroupBytes}, nil
}

// catch turns a panic of the Parquet library (it panics on a schema it cannot
// build) into an error.
func catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	f()
	return nil
}

// Write adds one row.
func (w *Writer[T]) Write(row T) error {
	if w.closed {
		return errors.New("parquetio: write after close")
	}
	if w.err != nil {
		return w.err
	}
	if w.batch == nil {
		w.batch = make([]T, 0, batchRows)
	}
	w.batch = append(w.batch, row)
	if len(w.batch) == cap(w.batch) {
		w.err = w.writeRows(w.batch)
		clear(w.batch)
		w.batch = w.batch[:0]
	}
	return w.err
}

// WriteRows adds rows in order; it is Write for many rows at once.
func (w *Writer[T]) WriteRows(rows []T) error {
	if w.closed {
		return errors.New("parquetio: write after close")
	}
	if w.err != nil {
		return w.err
	}
	if len(w.batch) > 0 {
		if w.err = w.writeRows(w.batch); w.err != nil {
			return w.err
		}
		clear(w.batch)
		w.batch = w.batch[:0]
	}
	for len(rows) > 0 && w.err == nil {
		n := min(len(rows), 64*batchRows)
		w.err = w.writeRows(rows[:n])
		rows = rows[n:]
	}
	return w.err
}

func (w *Writer[T]) writeRows(rows []T) error {
	if _, err := w.pw.Write(rows); err != nil {
		return fmt.Errorf("parquetio: writing rows: %w", err)
	}
	if w.pw.Size()-w.rgStart >= w.rgBytes {
		if err := w.pw.Flush(); err != nil {
			return fmt.Errorf("parquetio: writing row group: %w", err)
		}
		w.rgStart = w.pw.Size()
	}
	return nil
}

// Close writes the last row group, the page index and the footer, and
// flushes everything to the underlying writer. It does not close that writer.
func (w *Writer[T]) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if len(w.batch) > 0 {
		if w.err = w.writeRows(w.batch); w.err != nil {
			return w.err
		}
		w.batch = nil
	}
	if err := w.pw.Close(); err != nil {
		w.err = fmt.Errorf("parquetio: finishing file: %w", err)
	}
	return w.err
}

// Write writes rows as one complete Parquet file to w.
func Write[T any](w io.Writer, rows []T, opts Options) error {
	pw, err := NewWriter[T](w, opts)
	if err != nil {
		return err
	}
	if err := pw.WriteRows(rows); err != nil {
		return err
	}
	return pw.Close()
}

// fieldTag is the parquet-go struct tag that replaces one field's own.
type fieldTag struct {
	field string
	tag   reflect.StructTag
}

// writerTags translates each field's tag ("name=x, type=INT64,
// logicaltype=TIMESTAMP, ...", the form the schemas declare and the reader
// binds by) into the tag parquet-go builds its schema from. Only flat
// required int32, int64 and string fields are supported; the declared
// Parquet type must match the Go type. Encodings: encoding=PLAIN_DICTIONARY
// (or RLE_DICTIONARY) gives a dictionary, DELTA_BINARY_PACKED and
// DELTA_BYTE_ARRAY the delta encodings, PLAIN or none plain values.
func writerTags(t reflect.Type) ([]fieldTag, error) {
	var out []fieldTag
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		raw, ok := sf.Tag.Lookup("parquet")
		if !sf.IsExported() {
			continue
		}
		if !ok {
			out = append(out, fieldTag{sf.Name, `parquet:"-"`})
			continue
		}
		kv := parseTag(raw)
		name := kv["name"]
		if name == "" || strings.ContainsAny(name, `,"() `) {
			return nil, fmt.Errorf("parquetio: %s.%s: parquet tag has no usable name", t, sf.Name)
		}
		if sf.Type.Name() != sf.Type.Kind().String() {
			return nil, fmt.Errorf("parquetio: %s.%s: named type %s not supported", t, sf.Name, sf.Type)
		}
		want := map[reflect.Kind]string{reflect.Int32: "INT32", reflect.Int64: "INT64", reflect.String: "BYTE_ARRAY"}[sf.Type.Kind()]
		if want == "" {
			return nil, fmt.Errorf("parquetio: %s.%s: unsupported field type %s", t, sf.Name, sf.Type)
		}
		if typ := kv["type"]; typ != "" && typ != want {
			return nil, fmt.Errorf("parquetio: %s.%s: type=%s for a Go %s", t, sf.Name, typ, sf.Type)
		}
		if r := kv["repetitiontype"]; r != "" && r != "REQUIRED" {
			return nil, fmt.Errorf("parquetio: %s.%s: repetitiontype=%s not supported", t, sf.Name, r)
		}
		parts := []string{name}
		switch {
		case kv["logicaltype"] == "TIMESTAMP":
			unit := map[string]string{"MILLIS": "millisecond", "MICROS": "microsecond", "NANOS": "nanosecond"}[kv["logicaltype.unit"]]
			if unit == "" || sf.Type.Kind() != reflect.Int64 || kv["logicaltype.isadjustedtoutc"] != "true" {
				return nil, fmt.Errorf("parquetio: %s.%s: want an int64 UTC timestamp in MILLIS, MICROS or NANOS", t, sf.Name)
			}
			parts = append(parts, "timestamp("+unit+":utc)")
		case kv["convertedtype"] == "DECIMAL" || kv["logicaltype"] == "DECIMAL":
			scale, prec := kv["scale"], kv["precision"]
			if scale == "" {
				scale, prec = kv["logicaltype.scale"], kv["logicaltype.precision"]
			}
			if scale == "" || prec == "" || sf.Type.Kind() == reflect.String {
				return nil, fmt.Errorf("parquetio: %s.%s: decimal needs scale and precision on an integer", t, sf.Name)
			}
			parts = append(parts, "decimal("+scale+":"+prec+")")
		case sf.Type.Kind() == reflect.String:
			if c := kv["convertedtype"]; c != "" && c != "UTF8" {
				return nil, fmt.Errorf("parquetio: %s.%s: convertedtype=%s not supported", t, sf.Name, c)
			}
		}
		switch enc := kv["encoding"]; enc {
		case "", "PLAIN":
			parts = append(parts, "plain")
		case "PLAIN_DICTIONARY", "RLE_DICTIONARY":
			parts = append(parts, "dict")
		case "DELTA_BINARY_PACKED":
			if sf.Type.Kind() == reflect.String {
				return nil, fmt.Errorf("parquetio: %s.%s: %s on a string", t, sf.Name, enc)
			}
			parts = append(parts, "delta")
		case "DELTA_BYTE_ARRAY":
			if sf.Type.Kind() != reflect.String {
				return nil, fmt.Errorf("parquetio: %s.%s: %s on an integer", t, sf.Name, enc)
			}
			parts = append(parts, "delta")
		default:
			return nil, fmt.Errorf("parquetio: %s.%s: encoding=%s not supported", t, sf.Name, enc)
		}
		out = append(out, fieldTag{sf.Name, reflect.StructTag(`parquet:"` + strings.Join(parts, ",") + `"`)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parquetio: %s has no parquet-tagged fields", t)
	}
	return out, nil
}
