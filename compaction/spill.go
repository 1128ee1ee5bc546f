package compaction

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/schemas"
)

// Spill files hold rows on local disk while a day larger than memory is
// compacted: one file per request-id bucket, then one sorted run per bucket.
// A record is the daily row's columns in order: strings that repeat across
// rows (team, model, status...) as ids into the compaction's string table,
// the others length-prefixed, integers as zig-zag varints. The files live only
// for one run and are never read by anything else.

// strtab interns the strings that repeat across rows.
type strtab struct {
	ids  map[string]uint64
	strs []string
}

func newStrtab() *strtab { return &strtab{ids: map[string]uint64{}} }

func (t *strtab) id(s string) uint64 {
	if id, ok := t.ids[s]; ok {
		return id
	}
	id := uint64(len(t.strs))
	t.ids[s] = id
	t.strs = append(t.strs, s)
	return id
}

type spillWriter struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte
	tab *strtab
	n   int
	// last is each id column's last string and its id: most rows repeat
	// their neighbour's operation, status, region, tier...
	last [10]struct {
		s   string
		id  uint64
		set bool
	}
}

func newSpillWriter(dir, pattern string, tab *strtab) (*spillWriter, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("creating spill file: %w", err)
	}
	return &spillWriter{f: f, w: bufio.NewWriterSize(f, 256<<10), tab: tab}, nil
}

func (s *spillWriter) write(r *schemas.DailyRow) error {
	b := s.buf[:0]
	str := func(v string) {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	id := func(col int, v string) {
		l := &s.last[col]
		if !l.set || v != l.s {
			l.s, l.id, l.set = v, s.tab.id(v), true
		}
		b = binary.AppendUvarint(b, l.id)
	}
	num := func(v int64) { b = binary.AppendVarint(b, v) }
	num(int64(r.SchemaVersion))
	str(r.EventID)
	str(r.RequestID)
	num(r.Timestamp)
	id(0, r.TeamID)
	id(1, r.CostCenter)
	id(2, r.ModelID)
	id(3, r.Operation)
	id(4, r.Status)
	num(r.InputTokens)
	num(r.OutputTokens)
	num(r.LatencyMS)
	num(r.CacheReadInputTokens)
	num(r.CacheWriteInputTokens)
	num(r.ImageCount)
	num(r.ImageHeight)
	num(r.ImageWidth)
	num(r.ImageSteps)
	id(5, r.ImageQuality)
	id(6, r.APIKeyID)
	id(7, r.Region)
	id(8, r.PricingTier)
	id(9, r.ModelAlias)
	num(r.InputCost)
	num(r.OutputCost)
	num(r.CacheReadCost)
	num(r.CacheWriteCost)
	num(r.ImageCost)
	num(r.TotalCost)
	s.buf = b
	s.n++
	_, err := s.w.Write(b)
	return err
}

// finish flushes the file and rewinds it for reading.
func (s *spillWriter) finish() (*spillReader, error) {
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("writing spill file: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return &spillReader{f: s.f, tab: s.tab, left: s.n, chunk: spillChunk}, nil
}

func (s *spillWriter) remove() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// spillChunk is how much of a spill file a reader holds at once when it
// streams (a run being merged).
const spillChunk = 256 << 10

// spillReader decodes the rows of a spill file from chunks of it held as
// strings: the ids of a row are substrings of its chunk, not allocations of
// their own, and a chunk lives as long as a row read from it is kept.
type spillReader struct {
	f     *os.File
	tab   *strtab
	left  int
	err   error
	data  string // the chunk being read
	off   int    // where the next row starts in data
	chunk int    // bytes read per refill
	eof   bool
}

func (s *spillReader) remove() {
	s.f.Close()
	os.Remove(s.f.Name())
}

var errSpillCorrupt = errors.New("spill file corrupt")

// readAll makes the next refill read the rest of the file at once: a bucket
// is read whole.
func (s *spillReader) readAll() {
	if st, err := s.f.Stat(); err == nil {
		s.chunk = max(s.chunk, int(st.Size())+1)
	}
}

// refill keeps the unread end of the chunk and appends the next bytes of the
// file to it, at least doubling what is held when a row did not fit.
func (s *spillReader) refill(grow bool) bool {
	if s.eof {
		return false
	}
	rest := s.data[s.off:]
	n := s.chunk
	if grow {
		n = max(n, 2*len(rest))
	}
	// A strings.Builder hands over its bytes as the string without a copy.
	var sb strings.Builder
	sb.Grow(len(rest) + n)
	sb.WriteString(rest)
	m, err := io.CopyN(&sb, s.f, int64(n))
	switch {
	case err == io.EOF:
		s.eof = true
	case err != nil:
		s.err = fmt.Errorf("reading spill file: %w", err)
		return false
	}
	s.data, s.off = sb.String(), 0
	return m > 0
}

// read decodes the next row; false at the end or on an error (see s.err).
func (s *spillReader) read(r *schemas.DailyRow) bool {
	if s.left == 0 || s.err != nil {
		return false
	}
	for {
		next, st := decodeSpillRow(s.data, s.off, s.tab, r)
		switch st {
		case rowOK:
			s.off = next
			s.left--
			return true
		case rowShort:
			if s.refill(true) {
				continue
			}
			if s.err == nil {
				s.err = fmt.Errorf("%w: it ends inside a row", errSpillCorrupt)
			}
		default:
			s.err = errSpillCorrupt
		}
		return false
	}
}

type rowStatus int

const (
	rowOK    rowStatus = iota
	rowShort           // the row runs past the end of data
	rowBad             // not a row
)

// decodeSpillRow decodes the row at data[off:] (the layout spillWriter.write
// writes) and returns where the next one starts.
func decodeSpillRow(data string, off int, tab *strtab, r *schemas.DailyRow) (int, rowStatus) {
	st := rowOK
	uvarint := func() uint64 {
		var x uint64
		for shift := uint(0); shift < 64; shift += 7 {
			if off >= len(data) {
				st = max(st, rowShort)
				return 0
			}
			b := data[off]
			off++
			if b < 0x80 {
				return x | uint64(b)<<shift
			}
			x |= uint64(b&0x7f) << shift
		}
		st = rowBad
		return 0
	}
	num := func() int64 {
		u := uvarint()
		return int64(u>>1) ^ -int64(u&1)
	}
	id := func() string {
		v := uvarint()
		if st != rowOK {
			return ""
		}
		if v >= uint64(len(tab.strs)) {
			st = rowBad
			return ""
		}
		return tab.strs[v]
	}
	str := func() string {
		n := uvarint()
		if st != rowOK {
			return ""
		}
		if n > 1<<20 {
			st = rowBad
			return ""
		}
		if uint64(len(data)-off) < n {
			st = rowShort
			return ""
		}
		v := data[off : off+int(n)]
		off += int(n)
		return v
	}
	r.SchemaVersion = int32(num())
	r.EventID = str()
	r.RequestID = str()
	r.Timestamp = num()
	r.TeamID = id()
	r.CostCenter = id()
	r.ModelID = id()
	r.Operation = id()
	r.Status = id()
	r.InputTokens = num()
	r.OutputTokens = num()
	r.LatencyMS = num()
	r.CacheReadInputTokens = num()
	r.CacheWriteInputTokens = num()
	r.ImageCount = num()
	r.ImageHeight = num()
	r.ImageWidth = num()
	r.ImageSteps = num()
	r.ImageQuality = id()
	r.APIKeyID = id()
	r.Region = id()
	r.PricingTier = id()
	r.ModelAlias = id()
	r.InputCost = num()
	r.OutputCost = num()
	r.CacheReadCost = num()
	r.CacheWriteCost = num()
	r.ImageCost = num()
	r.TotalCost = num()
	return off, st
}

// mergeRuns streams the rows of sorted runs, in aggregator.CompareDaily order, to emit.
func mergeRuns(runs []*spillReader, emit func(*schemas.DailyRow) error) error {
	h := &runHeap{}
	for _, r := range runs {
		it := &runHead{src: r}
		if r.read(&it.row) {
			h.items = append(h.items, it)
		} else if r.err != nil {
			return r.err
		}
	}
	heap.Init(h)
	for h.Len() > 0 {
		it := h.items[0]
		if err := emit(&it.row); err != nil {
			return err
		}
		if it.src.read(&it.row) {
			heap.Fix(h, 0)
			continue
		}
		if it.src.err != nil {
			return it.src.err
		}
		heap.Pop(h)
	}
	return nil
}

type runHead struct {
	row schemas.DailyRow
	src *spillReader
}

type runHeap struct{ items []*runHead }

func (h *runHeap) Len() int { return len(h.items) }
func (h *runHeap) Less(i, j int) bool {
	return aggregator.CompareDaily(&h.items[i].row, &h.items[j].row) < 0
}
func (h *runHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *runHeap) Push(x any)    { h.items = append(h.items, x.(*runHead)) }
func (h *runHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}
