package parquetio

import (
	"math"

	"github.com/xitongsys/parquet-go/common"
	xparquet "github.com/xitongsys/parquet-go/parquet"
	xwriter "github.com/xitongsys/parquet-go/writer"
)

// repairPageIndex corrects the ColumnIndex and OffsetIndex entries that
// xitongsys/parquet-go v1.6.2 collected while flushing row groups, and reports
// for each column chunk (row groups in order, columns in order) whether its
// index is now consistent and may be written. It must run after the last
// Flush and before RenameSchema, while PathInSchema still holds the writer's
// internal names.
//
// What v1.6.2 gets wrong, and what is done about it:
//   - PageLocation.compressed_page_size omits the page header. Pages of a chunk
//     are written back to back, from the dictionary page (if any) over
//     total_compressed_size bytes, so a page's full size is the distance to the
//     next page, or to the end of the chunk for the last one.
//   - For dictionary columns, null_pages, min_values and max_values get one
//     entry per page including the dictionary page, which the writer always
//     puts first: every bound is one page off. The first entry is dropped.
//   - first_row_index adds up each page's num_values. That counts rows only
//     when the column has no repetition; a chunk with repeated values keeps
//     no index (num_values is then values, not rows).
//   - Pages holding only nulls have no bounds; the format wants null_pages set
//     and empty bounds for them.
//
// Any chunk whose collected entries do not fit this description exactly (page
// count, contiguous offsets, row count) keeps no index rather than a guessed one.
func repairPageIndex(pw *xwriter.ParquetWriter) []bool {
	var keep []bool
	idx := 0
	for _, rg := range pw.Footer.RowGroups {
		for _, cc := range rg.Columns {
			i := idx
			idx++
			ok := i < len(pw.ColumnIndexes) && i < len(pw.OffsetIndexes) &&
				repairChunk(pw, rg.NumRows, cc.MetaData, pw.ColumnIndexes[i], pw.OffsetIndexes[i])
			keep = append(keep, ok)
		}
	}
	return keep
}

func repairChunk(pw *xwriter.ParquetWriter, numRows int64, md *xparquet.ColumnMetaData, ci *xparquet.ColumnIndex, oi *xparquet.OffsetIndex) bool {
	if md == nil || ci == nil || oi == nil || len(oi.PageLocations) == 0 {
		return false
	}
	sh := pw.SchemaHandler
	maxRep, err := sh.MaxRepetitionLevel(md.PathInSchema)
	if err != nil || maxRep > 0 {
		return false
	}
	maxDef, err := sh.MaxDefinitionLevel(md.PathInSchema)
	if err != nil {
		return false
	}
	// Without repetition every value slot is one row.
	if md.NumValues != numRows {
		return false
	}

	locs := oi.PageLocations
	start := md.DataPageOffset
	if md.DictionaryPageOffset != nil {
		start = *md.DictionaryPageOffset
		if len(ci.NullPages) != len(locs)+1 || len(ci.MinValues) != len(locs)+1 || len(ci.MaxValues) != len(locs)+1 {
			return false
		}
		ci.NullPages, ci.MinValues, ci.MaxValues = ci.NullPages[1:], ci.MinValues[1:], ci.MaxValues[1:]
	}
	if len(ci.NullPages) != len(locs) || len(ci.MinValues) != len(locs) || len(ci.MaxValues) != len(locs) {
		return false
	}
	end := start + md.TotalCompressedSize
	if locs[0].Offset != md.DataPageOffset || locs[0].FirstRowIndex != 0 {
		return false
	}

	for k, loc := range locs {
		next := end
		if k+1 < len(locs) {
			next = locs[k+1].Offset
			// Rows of one page must end before the next page's first row.
			if locs[k+1].FirstRowIndex <= loc.FirstRowIndex {
				return false
			}
		} else if loc.FirstRowIndex >= numRows {
			return false
		}
		size := next - loc.Offset
		// The recorded size is the page body; the header comes on top of it.
		if size <= int64(loc.CompressedPageSize) || size > math.MaxInt32 {
			return false
		}
		loc.CompressedPageSize = int32(size)
	}

	for k := range locs {
		min, max := ci.MinValues[k], ci.MaxValues[k]
		if min != nil && max != nil {
			continue
		}
		// No bounds: a required column always has them unless statistics are
		// off, and then no page's bounds are known.
		if maxDef == 0 || omitStats(pw, md.PathInSchema) {
			return false
		}
		ci.NullPages[k] = true
		ci.MinValues[k], ci.MaxValues[k] = []byte{}, []byte{}
	}
	if maxDef == 0 {
		// Writers should always give null counts; for a required column they are zeros.
		ci.NullCounts = make([]int64, len(locs))
	}
	ci.BoundaryOrder = xparquet.BoundaryOrder_UNORDERED
	return true
}

func omitStats(pw *xwriter.ParquetWriter, path []string) bool {
	sh := pw.SchemaHandler
	i, ok := sh.MapIndex[common.PathToStr(path)]
	if !ok || int(i) >= len(sh.Infos) {
		return true
	}
	return sh.Infos[i].OmitStats
}
