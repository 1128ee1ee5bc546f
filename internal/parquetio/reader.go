package parquetio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/decimal128"
	"github.com/apache/arrow/go/v15/arrow/memory"
	pqfile "github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"

	"github.com/meter-dev/meter/schemas"
)

// ReadEvents reads every row of an events file.
func ReadEvents(r io.ReaderAt, size int64) ([]schemas.EventRow, error) {
	return Read[schemas.EventRow](r, size)
}

// ReadWindows reads every row of a usage_windows file.
func ReadWindows(r io.ReaderAt, size int64) ([]schemas.WindowRow, error) {
	return Read[schemas.WindowRow](r, size)
}

// ReadDaily reads every row of a daily file.
func ReadDaily(r io.ReaderAt, size int64) ([]schemas.DailyRow, error) {
	return Read[schemas.DailyRow](r, size)
}

// ReadFile reads every row of the Parquet file at path into rows of type T.
func ReadFile[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	rows, err := Read[T](f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

// Read reads every row of a Parquet file of size bytes into rows of the flat
// struct type T, matching columns to fields by the name in each field's
// parquet tag. Every field must have its column, except one tagged
// parquetio:"may-be-absent" (a column added later), which an older file
// without it leaves zero; columns without a field are skipped. Nulls read as zero values. Timestamps are converted to the
// unit of the field's tag and decimals to the field's scale, exactly or not at all.
//
// Row groups are read one at a time with pqarrow and converted column by column.
func Read[T any](r io.ReaderAt, size int64) ([]T, error) {
	fields, err := bindFields(reflect.TypeFor[T]())
	if err != nil {
		return nil, err
	}
	pf, err := pqfile.NewParquetReader(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, fmt.Errorf("parquetio: opening file: %w", err)
	}
	defer pf.Close()

	sc := pf.MetaData().Schema
	cols := make([]int, 0, len(fields))
	props := pqarrow.ArrowReadProperties{Parallel: true, BatchSize: 64 << 10}
	present := fields[:0:0]
	for _, f := range fields {
		c := sc.ColumnIndexByName(f.name)
		if c < 0 && f.mayBeAbsent {
			// A column added after the file was written: zero values.
			continue
		}
		if c < 0 {
			return nil, fmt.Errorf("parquetio: file has no column %q", f.name)
		}
		present = append(present, f)
		cols = append(cols, c)
		// Dictionary columns come back as arrow dictionaries: each distinct
		// string is converted once, not once per row.
		props.SetReadDict(c, f.kind == reflect.String && f.dict)
	}
	fr, err := pqarrow.NewFileReader(pf, props, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("parquetio: opening file: %w", err)
	}

	n := pf.NumRows()
	if n > math.MaxInt32*16 {
		return nil, fmt.Errorf("parquetio: %d rows is too many to read at once", n)
	}
	rows := make([]T, n)
	dst := rowSink{base: unsafe.Pointer(unsafe.SliceData(rows)), stride: reflect.TypeFor[T]().Size(), n: len(rows)}
	at := 0
	for rg := 0; rg < pf.NumRowGroups(); rg++ {
		tbl, err := fr.ReadRowGroups(context.Background(), cols, []int{rg})
		if err != nil {
			return nil, fmt.Errorf("parquetio: reading row group %d: %w", rg, err)
		}
		err = fillRowGroup(dst, at, tbl, present)
		at += int(tbl.NumRows())
		tbl.Release()
		if err != nil {
			return nil, fmt.Errorf("parquetio: row group %d: %w", rg, err)
		}
	}
	if at != len(rows) {
		return nil, fmt.Errorf("parquetio: read %d rows, footer says %d", at, len(rows))
	}
	return rows, nil
}

func fillRowGroup(dst rowSink, at int, tbl arrow.Table, fields []field) error {
	if at+int(tbl.NumRows()) > dst.n {
		return errors.New("more rows than the footer says")
	}
	for _, f := range fields {
		ix := tbl.Schema().FieldIndices(f.name)
		if len(ix) != 1 {
			return fmt.Errorf("column %q not read", f.name)
		}
		pos := at
		for _, arr := range tbl.Column(ix[0]).Data().Chunks() {
			if err := fill(dst, pos, f, arr); err != nil {
				return fmt.Errorf("column %q: %w", f.name, err)
			}
			pos += arr.Len()
		}
	}
	return nil
}

// rowSink addresses the fields of a []T being filled. The field offsets and
// kinds were checked against T by bindFields, so every store below writes a
// value of the field's own type inside rows[i].
type rowSink struct {
	base   unsafe.Pointer
	stride uintptr
	n      int
}

func at[V any](s rowSink, row int, f *field) *V {
	return (*V)(unsafe.Add(s.base, uintptr(row)*s.stride+f.offset))
}

func fill(dst rowSink, pos int, f field, arr arrow.Array) error {
	n := arr.Len()
	valid := func(i int) bool { return true }
	if arr.NullN() > 0 {
		valid = arr.IsValid
	}
	switch f.kind {
	case reflect.String:
		return fillStrings(dst, pos, &f, arr, valid)
	case reflect.Int32:
		a, ok := arr.(*array.Int32)
		if !ok {
			return fmt.Errorf("cannot read %s into int32", arr.DataType())
		}
		for i, v := range a.Int32Values() {
			if valid(i) {
				*at[int32](dst, pos+i, &f) = v
			}
		}
		return nil
	case reflect.Int64:
		var vals []int64
		switch a := arr.(type) {
		case *array.Int64:
			vals = a.Int64Values()
		case *array.Int32:
			for i, v := range a.Int32Values() {
				if valid(i) {
					*at[int64](dst, pos+i, &f) = int64(v)
				}
			}
			return nil
		case *array.Timestamp:
			mul, div, err := timestampScale(a.DataType().(*arrow.TimestampType).Unit, f.unit)
			if err != nil {
				return err
			}
			for i, v := range a.TimestampValues() {
				if valid(i) {
					*at[int64](dst, pos+i, &f) = int64(v) * mul / div
				}
			}
			return nil
		case *array.Decimal128:
			scale := a.DataType().(*arrow.Decimal128Type).Scale
			if f.scale < 0 {
				return fmt.Errorf("decimal column into a field without a scale")
			}
			for i := 0; i < n; i++ {
				if !valid(i) {
					continue
				}
				v, err := decimalToInt64(a.Value(i), scale, f.scale)
				if err != nil {
					return fmt.Errorf("row %d: %w", pos+i, err)
				}
				*at[int64](dst, pos+i, &f) = v
			}
			return nil
		default:
			return fmt.Errorf("cannot read %s into int64", arr.DataType())
		}
		for i, v := range vals {
			if valid(i) {
				*at[int64](dst, pos+i, &f) = v
			}
		}
		return nil
	}
	return fmt.Errorf("unsupported field kind %s", f.kind)
}

func fillStrings(dst rowSink, pos int, f *field, arr arrow.Array, valid func(int) bool) error {
	switch a := arr.(type) {
	case *array.Dictionary:
		dict, err := stringValues(a.Dictionary())
		if err != nil {
			return err
		}
		for i := 0; i < a.Len(); i++ {
			if valid(i) {
				*at[string](dst, pos+i, f) = dict[a.GetValueIndex(i)]
			}
		}
		return nil
	default:
		vals, err := stringValues(arr)
		if err != nil {
			return err
		}
		for i, v := range vals {
			if valid(i) {
				*at[string](dst, pos+i, f) = v
			}
		}
		return nil
	}
}

// stringValues returns the values of a string or binary array as Go strings
// that share one copy of the array's bytes (arrow's Value aliases memory the
// table owns and releases).
func stringValues(arr arrow.Array) ([]string, error) {
	switch a := arr.(type) {
	case *array.String:
		return sliceStrings(string(a.ValueBytes()), a.ValueOffsets()), nil
	case *array.Binary:
		return sliceStrings(string(a.ValueBytes()), a.ValueOffsets()), nil
	case *array.LargeString:
		return sliceStrings(string(a.ValueBytes()), a.ValueOffsets()), nil
	}
	return nil, fmt.Errorf("cannot read %s into string", arr.DataType())
}

func sliceStrings[O int32 | int64](data string, offs []O) []string {
	if len(offs) == 0 {
		return nil
	}
	out := make([]string, len(offs)-1)
	base := offs[0]
	for i := range out {
		out[i] = data[offs[i]-base : offs[i+1]-base]
	}
	return out
}

func timestampScale(from arrow.TimeUnit, to string) (mul, div int64, err error) {
	per := map[arrow.TimeUnit]int64{arrow.Second: 1, arrow.Millisecond: 1e3, arrow.Microsecond: 1e6, arrow.Nanosecond: 1e9}
	perTag := map[string]int64{"": 1e3, "MILLIS": 1e3, "MICROS": 1e6, "NANOS": 1e9}
	src, dst := per[from], perTag[to]
	if src == 0 || dst == 0 {
		return 0, 0, fmt.Errorf("timestamp unit %s into %q", from, to)
	}
	if dst >= src {
		return dst / src, 1, nil
	}
	return 1, src / dst, nil
}

func decimalToInt64(v decimal128.Num, from, to int32) (int64, error) {
	if from != to {
		var err error
		if v, err = v.Rescale(from, to); err != nil {
			return 0, fmt.Errorf("decimal scale %d to %d: %w", from, to, err)
		}
	}
	hi, lo := v.HighBits(), v.LowBits()
	if (hi == 0 && lo <= math.MaxInt64) || (hi == -1 && lo > math.MaxInt64) {
		return int64(lo), nil
	}
	return 0, fmt.Errorf("decimal %s does not fit in int64", v.BigInt())
}

// field is one struct field bound to a column by its parquet tag.
type field struct {
	name   string
	offset uintptr
	kind   reflect.Kind
	dict   bool   // encoding=PLAIN_DICTIONARY or RLE_DICTIONARY
	unit   string // logicaltype.unit of a timestamp, "" otherwise
	scale  int32  // scale of a decimal, -1 otherwise
	// mayBeAbsent (struct tag parquetio:"may-be-absent") marks a column
	// added after files were written: a file without it reads zero values.
	mayBeAbsent bool
}

func bindFields(t reflect.Type) ([]field, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("parquetio: row type %s is not a struct", t)
	}
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("parquet")
		if !ok || !sf.IsExported() {
			continue
		}
		kv := parseTag(tag)
		f := field{name: kv["name"], offset: sf.Offset, kind: sf.Type.Kind(), scale: -1, mayBeAbsent: sf.Tag.Get("parquetio") == "may-be-absent"}
		if f.name == "" {
			return nil, fmt.Errorf("parquetio: %s.%s: parquet tag has no name", t, sf.Name)
		}
		switch f.kind {
		case reflect.Int32, reflect.Int64, reflect.String:
		default:
			return nil, fmt.Errorf("parquetio: %s.%s: unsupported field type %s", t, sf.Name, sf.Type)
		}
		if sf.Type.Name() != f.kind.String() {
			return nil, fmt.Errorf("parquetio: %s.%s: named type %s not supported", t, sf.Name, sf.Type)
		}
		enc := kv["encoding"]
		f.dict = enc == "PLAIN_DICTIONARY" || enc == "RLE_DICTIONARY"
		if kv["logicaltype"] == "TIMESTAMP" {
			f.unit = kv["logicaltype.unit"]
		}
		if kv["convertedtype"] == "DECIMAL" || kv["logicaltype"] == "DECIMAL" {
			s := kv["scale"]
			if s == "" {
				s = kv["logicaltype.scale"]
			}
			sc, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parquetio: %s.%s: decimal scale %q", t, sf.Name, s)
			}
			f.scale = int32(sc)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parquetio: %s has no parquet-tagged fields", t)
	}
	return out, nil
}

// parseTag splits a parquet tag ("name=x, type=INT64, ...") into keys
// (lowercased) and values.
func parseTag(tag string) map[string]string {
	kv := map[string]string{}
	for _, part := range strings.Split(tag, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return kv
}
