package parquetio

import (
	"fmt"
	"reflect"
	"unsafe"

	"github.com/xitongsys/parquet-go/common"
	"github.com/xitongsys/parquet-go/layout"
	xparquet "github.com/xitongsys/parquet-go/parquet"
	"github.com/xitongsys/parquet-go/schema"
)

// marshalFunc is the shape of ParquetWriter.MarshalFunc.
type marshalFunc = func(src []interface{}, sh *schema.SchemaHandler) (*map[string]*layout.Table, error)

// flatMarshal returns a column-wise replacement for marshal.Marshal when every
// column of T's schema is a required int32, int64 or string field directly in
// T, as in the schemas row types; ok is false otherwise and the library's
// generic marshaller stays. The tables it builds are the ones marshal.Marshal
// builds for such a schema (same paths, levels, schema elements and tag
// infos, values converted as types.InterfaceToParquetType does), but without
// walking a node tree per value: writing is several times faster.
func flatMarshal[T any](sh *schema.SchemaHandler) (marshalFunc, bool) {
	t := reflect.TypeFor[T]()
	if sh == nil || t.Kind() != reflect.Struct {
		return nil, false
	}
	type column struct {
		path   string
		offset uintptr
		kind   reflect.Kind
		el     *xparquet.SchemaElement
		info   *common.Tag
	}
	var cols []column
	for i, el := range sh.SchemaElements {
		if i == 0 {
			if el.GetNumChildren() != int32(t.NumField()) {
				return nil, false
			}
			continue
		}
		path := sh.IndexMap[int32(i)]
		p := common.StrToPath(path)
		if el.GetNumChildren() != 0 || len(p) != 2 || el.GetRepetitionType() != xparquet.FieldRepetitionType_REQUIRED || el.Type == nil {
			return nil, false
		}
		sf, ok := t.FieldByName(p[1])
		if !ok || len(sf.Index) != 1 || sf.Type.Name() != sf.Type.Kind().String() {
			return nil, false
		}
		want := map[reflect.Kind]xparquet.Type{reflect.Int32: xparquet.Type_INT32, reflect.Int64: xparquet.Type_INT64, reflect.String: xparquet.Type_BYTE_ARRAY}
		if pt, ok := want[sf.Type.Kind()]; !ok || pt != *el.Type {
			return nil, false
		}
		cols = append(cols, column{path: path, offset: sf.Offset, kind: sf.Type.Kind(), el: el, info: sh.Infos[i]})
	}

	return func(src []interface{}, sh *schema.SchemaHandler) (*map[string]*layout.Table, error) {
		rows := make([]T, len(src))
		for i, o := range src {
			r, ok := o.(T)
			if !ok {
				return nil, fmt.Errorf("row %d is %T, not %T", i, o, r)
			}
			rows[i] = r
		}
		base, stride := unsafe.Pointer(unsafe.SliceData(rows)), t.Size()
		res := make(map[string]*layout.Table, len(cols))
		for _, c := range cols {
			vals := make([]interface{}, len(rows))
			for i := range rows {
				p := unsafe.Add(base, uintptr(i)*stride+c.offset)
				switch c.kind {
				case reflect.Int32:
					vals[i] = *(*int32)(p)
				case reflect.Int64:
					vals[i] = *(*int64)(p)
				case reflect.String:
					vals[i] = *(*string)(p)
				}
			}
			res[c.path] = &layout.Table{
				RepetitionType:   xparquet.FieldRepetitionType_REQUIRED,
				Schema:           c.el,
				Path:             common.StrToPath(c.path),
				Values:           vals,
				DefinitionLevels: make([]int32, len(rows)),
				RepetitionLevels: make([]int32, len(rows)),
				Info:             c.info,
			}
		}
		return &res, nil
	}, true
}
