package compaction

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

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
	id := func(v string) { b = binary.AppendUvarint(b, s.tab.id(v)) }
	num := func(v int64) { b = binary.AppendVarint(b, v) }
	num(int64(r.SchemaVersion))
	str(r.EventID)
	str(r.RequestID)
	num(r.Timestamp)
	id(r.TeamID)
	id(r.CostCenter)
	id(r.ModelID)
	id(r.Operation)
	id(r.Status)
	num(r.InputTokens)
	num(r.OutputTokens)
	num(r.LatencyMS)
	num(r.CacheReadInputTokens)
	num(r.CacheWriteInputTokens)
	num(r.ImageCount)
	num(r.ImageHeight)
	num(r.ImageWidth)
	num(r.ImageSteps)
	id(r.ImageQuality)
	id(r.APIKeyID)
	id(r.Region)
	id(r.PricingTier)
	id(r.ModelAlias)
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
	return &spillReader{f: s.f, r: bufio.NewReaderSize(s.f, 256<<10), tab: s.tab, left: s.n}, nil
}

func (s *spillWriter) remove() {
	s.f.Close()
	os.Remove(s.f.Name())
}

type spillReader struct {
	f    *os.File
	r    *bufio.Reader
	tab  *strtab
	left int
	err  error
}

func (s *spillReader) remove() {
	s.f.Close()
	os.Remove(s.f.Name())
}

var errSpillCorrupt = errors.New("spill file corrupt")

// read decodes the next row; false at the end or on an error (see s.err).
func (s *spillReader) read(r *schemas.DailyRow) bool {
	if s.left == 0 || s.err != nil {
		return false
	}
	s.left--
	num := func() int64 {
		v, err := binary.ReadVarint(s.r)
		if err != nil && s.err == nil {
			s.err = fmt.Errorf("%w: %v", errSpillCorrupt, err)
		}
		return v
	}
	id := func() string {
		v, err := binary.ReadUvarint(s.r)
		if err != nil || v >= uint64(len(s.tab.strs)) {
			if s.err == nil {
				s.err = errSpillCorrupt
			}
			return ""
		}
		return s.tab.strs[v]
	}
	str := func() string {
		n, err := binary.ReadUvarint(s.r)
		if err != nil || n > 1<<20 {
			if s.err == nil {
				s.err = errSpillCorrupt
			}
			return ""
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(s.r, b); err != nil && s.err == nil {
			s.err = fmt.Errorf("%w: %v", errSpillCorrupt, err)
		}
		return string(b)
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
	return s.err == nil
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
