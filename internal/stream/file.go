package stream

// The embedded stream (file://DIR) is a directory of append-only shard logs:
//
//	DIR/stream.json                      {"format":1,"shards":N}, written once
//	DIR/shardId-000000000000.log         the records of shard 0
//	DIR/shardId-000000000000.idx         sparse time index of shard 0 (a hint only)
//
// A shard log starts with an 8-byte magic and holds framed records:
//
//	u32 body length | u32 CRC-32C of body | body
//	body = i64 arrival (unix ns) | u16 key length | key | data
//
// all little-endian. A record's sequence number is its byte offset in the log,
// zero-padded to 20 digits, so sequence numbers sort as strings and a
// checkpoint seeks straight to its record.
//
// Writers serialize on an exclusive flock of the log for each Put, append the
// batch with one write and fsync before Put returns. Readers take no lock: they
// parse frames up to the first one that is incomplete or fails its CRC and
// never return it; a later writer truncates such a tail (keeping the cut bytes
// in a side file) and appends from there, and the readers waiting at that
// offset pick the new records up.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meter-dev/meter/internal/atomicfile"
)

// FileOptions configures OpenFile.
type FileOptions struct {
	// Shards is the shard count when the stream is created. Zero means the
	// existing count, or 1 for a new stream; a different count for an
	// existing stream is an error (the file stream does not reshard).
	Shards int
	// ReadOnly opens the stream for reading only: no lock is taken, no torn
	// tail is repaired, nothing is created, and Put fails.
	ReadOnly bool
	// IndexInterval is how many log bytes a writer lets pass between entries
	// of the sparse time index used by AtTimestamp. Zero means 1 MiB.
	IndexInterval int64
	// Now is the clock that stamps arrival times; nil means time.Now.
	Now func() time.Time
}

// Limits of one record, the same as Kinesis's so that what the file stream
// accepts Kinesis accepts too.
const (
	MaxPartitionKeyLen = 256     // characters
	MaxRecordBytes     = 1 << 20 // data plus partition key
)

const (
	fileMagic        = "MTRSTRM1"
	frameHeaderLen   = 8
	bodyFixedLen     = 10 // arrival + key length
	maxBodyLen       = bodyFixedLen + MaxRecordBytes
	indexEntryLen    = 20 // offset, arrival, CRC-32C of the two
	seqDigits        = 20
	defaultIndexStep = 1 << 20
	metaName         = "stream.json"
	formatVersion    = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrReadOnly reports a Put on a stream opened with FileOptions.ReadOnly.
var ErrReadOnly = errors.New("stream opened read-only")

// FileStream is the embedded stream in a directory. It is a Producer and a
// Source, safe for concurrent use by goroutines and by processes.
type FileStream struct {
	dir    string
	opts   FileOptions
	shards []*fileShard
}

// fileShard is the writer side of one shard log.
type fileShard struct {
	id      string
	logPath string
	idxPath string

	mu          sync.Mutex // serializes Put in this process; flock serializes processes
	log         *os.File   // opened lazily by the first writer
	idx         *os.File
	end         int64 // valid end of the log as this writer last saw it
	lastArrival int64
	lastIndexed int64 // offset of the last index entry, 0 if none
	// frames is the buffer a batch's frames are built in, kept for the
	// next batch (appends hold mu).
	frames []byte
}

type streamMeta struct {
	Format int `json:"format"`
	Shards int `json:"shards"`
}

// ShardName returns the id of shard i, "shardId-000000000000" for 0, as Kinesis names them.
func ShardName(i int) string { return fmt.Sprintf("shardId-%012d", i) }

// OpenFile opens the stream in dir, creating it unless opts.ReadOnly. Unless
// read-only, it also repairs any torn tail a crashed writer left.
func OpenFile(dir string, opts FileOptions) (*FileStream, error) {
	if opts.Shards < 0 {
		return nil, fmt.Errorf("file stream %s: shard count %d is negative", dir, opts.Shards)
	}
	if opts.IndexInterval <= 0 {
		opts.IndexInterval = defaultIndexStep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n, err := loadOrCreateMeta(dir, opts)
	if err != nil {
		return nil, err
	}
	s := &FileStream{dir: dir, opts: opts}
	for i := 0; i < n; i++ {
		id := ShardName(i)
		s.shards = append(s.shards, &fileShard{
			id:      id,
			logPath: filepath.Join(dir, id+".log"),
			idxPath: filepath.Join(dir, id+".idx"),
		})
	}
	if !opts.ReadOnly {
		for _, sh := range s.shards {
			if err := sh.withLock(context.Background(), func() error { return nil }); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	return s, nil
}

func loadOrCreateMeta(dir string, opts FileOptions) (int, error) {
	path := filepath.Join(dir, metaName)
	read := func() (int, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		var m streamMeta
		if err := json.Unmarshal(b, &m); err != nil {
			return 0, fmt.Errorf("file stream %s: reading %s: %w", dir, metaName, err)
		}
		if m.Format != formatVersion || m.Shards < 1 {
			return 0, fmt.Errorf("file stream %s: unsupported %s (format %d, %d shards)", dir, metaName, m.Format, m.Shards)
		}
		if opts.Shards != 0 && opts.Shards != m.Shards {
			return 0, fmt.Errorf("file stream %s has %d shards, not %d", dir, m.Shards, opts.Shards)
		}
		return m.Shards, nil
	}
	n, err := read()
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return n, err
	}
	if opts.ReadOnly {
		return 0, fmt.Errorf("file stream %s: no stream there: %w", dir, err)
	}
	n = opts.Shards
	if n == 0 {
		n = 1
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("file stream %s: %w", dir, err)
	}
	b, _ := json.Marshal(streamMeta{Format: formatVersion, Shards: n})
	tmp, err := os.CreateTemp(dir, ".tmp-"+metaName+"-*")
	if err != nil {
		return 0, fmt.Errorf("file stream %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("file stream %s: writing %s: %w", dir, metaName, err)
	}
	// Link, not rename: when two processes create the stream at once, exactly
	// one wins and the other reads what the winner wrote.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return read()
		}
		return 0, fmt.Errorf("file stream %s: %w", dir, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return 0, fmt.Errorf("file stream %s: %w", dir, err)
	}
	return n, nil
}

// Close releases the writer's files. Iterators are closed separately.
func (s *FileStream) Close() error {
	var first error
	for _, sh := range s.shards {
		sh.mu.Lock()
		for _, f := range []*os.File{sh.log, sh.idx} {
			if f != nil {
				if err := f.Close(); err != nil && first == nil {
					first = err
				}
			}
		}
		sh.log, sh.idx = nil, nil
		sh.mu.Unlock()
	}
	return first
}

// Dir returns the stream's directory.
func (s *FileStream) Dir() string { return s.dir }

// Shards lists the shards; file shards never split, so none has parents.
func (s *FileStream) Shards(ctx context.Context) ([]Shard, error) {
	out := make([]Shard, len(s.shards))
	for i, sh := range s.shards {
		out[i] = Shard{ID: sh.id}
	}
	return out, nil
}

// ShardFor returns the shard a partition key routes to: the MD5 of the key
// as a 128-bit integer, placed in the shard whose hash key range holds it,
// with the ranges Kinesis gives a new stream of that many shards.
func (s *FileStream) ShardFor(partitionKey string) string {
	return ShardName(shardIndex(partitionKey, len(s.shards)))
}

var hashSpace = new(big.Int).Lsh(big.NewInt(1), 128)

func shardIndex(key string, n int) int {
	if n <= 1 {
		return 0
	}
	sum := md5.Sum([]byte(key))
	return shardOfHash(new(big.Int).SetBytes(sum[:]), n)
}

func shardOfHash(h *big.Int, n int) int {
	// Shard i starts at floor(2^128 * i / n).
	i := sort.Search(n, func(i int) bool {
		start := new(big.Int).Mul(hashSpace, big.NewInt(int64(i)))
		start.Quo(start, big.NewInt(int64(n)))
		return start.Cmp(h) > 0
	})
	return i - 1
}

// Put appends entries, each to the shard its partition key routes to, in
// order within a shard. It returns once every entry is fsynced; on an error
// some entries may have been appended (the stream is at-least-once).
func (s *FileStream) Put(ctx context.Context, entries []Entry) error {
	if s.opts.ReadOnly {
		return fmt.Errorf("file stream %s: %w", s.dir, ErrReadOnly)
	}
	byShard := make([][]Entry, len(s.shards))
	for i, e := range entries {
		if err := CheckEntry(e); err != nil {
			return fmt.Errorf("file stream %s: entry %d: %w", s.dir, i, err)
		}
		k := shardIndex(e.PartitionKey, len(s.shards))
		byShard[k] = append(byShard[k], e)
	}
	// Shards are separate files: their writes and fsyncs go on at once, so a
	// batch spread over n shards waits for about one fsync, not n.
	// The last shard is written on this goroutine.
	last := len(byShard) - 1
	for last > 0 && len(byShard[last]) == 0 {
		last--
	}
	errs := make([]error, len(byShard))
	var wg sync.WaitGroup
	for k, batch := range byShard {
		if len(batch) == 0 {
			continue
		}
		sh := s.shards[k]
		put := func() {
			if err := sh.withLock(ctx, func() error { return sh.append(batch, s.opts) }); err != nil {
				errs[k] = fmt.Errorf("file stream %s: appending to %s: %w", s.dir, sh.id, err)
			}
		}
		if k == last {
			put()
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); put() }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// withLock runs fn holding the shard's process mutex and its exclusive flock,
// after bringing the writer's view of the log up to date (and repairing a
// torn tail) if another process wrote since.
func (sh *fileShard) withLock(ctx context.Context, fn func() error) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.log == nil {
		if err := sh.openFiles(); err != nil {
			return err
		}
	}
	if err := flockExclusive(ctx, sh.log); err != nil {
		return err
	}
	defer syscall.Flock(int(sh.log.Fd()), syscall.LOCK_UN)
	st, err := sh.log.Stat()
	if err != nil {
		return err
	}
	if sh.end == 0 || st.Size() != sh.end {
		if err := sh.recover(st.Size()); err != nil {
			return err
		}
	}
	return fn()
}

func (sh *fileShard) openFiles() error {
	log, err := os.OpenFile(sh.logPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	idx, err := os.OpenFile(sh.idxPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		log.Close()
		return err
	}
	if err := atomicfile.SyncDir(filepath.Dir(sh.logPath)); err != nil {
		log.Close()
		idx.Close()
		return err
	}
	sh.log, sh.idx = log, idx
	sh.end = 0
	return nil
}

func flockExclusive(ctx context.Context, f *os.File) error {
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("locking %s: %w", f.Name(), ctx.Err())
		case <-time.After(wait):
		}
		if wait < 50*time.Millisecond {
			wait *= 2
		}
	}
}

// recover finds the valid end of the log (holding the lock), truncates a torn
// or corrupt tail after saving it beside the log, and trims the index to match.
func (sh *fileShard) recover(size int64) error {
	if size < int64(len(fileMagic)) {
		// New, or a crash while writing the magic.
		if size > 0 {
			b := make([]byte, size)
			if _, err := sh.log.ReadAt(b, 0); err != nil {
				return err
			}
			if !bytes.HasPrefix([]byte(fileMagic), b) {
				return fmt.Errorf("%s is not a stream shard log", sh.logPath)
			}
		}
		if _, err := sh.log.WriteAt([]byte(fileMagic), 0); err != nil {
			return err
		}
		if err := sh.log.Truncate(int64(len(fileMagic))); err != nil {
			return err
		}
		if err := sh.log.Sync(); err != nil {
			return err
		}
		if err := sh.idx.Truncate(0); err != nil {
			return err
		}
		sh.end, sh.lastArrival, sh.lastIndexed = int64(len(fileMagic)), 0, 0
		return nil
	}
	if err := checkMagic(sh.log); err != nil {
		return err
	}
	entries, err := readIndex(sh.idx)
	if err != nil {
		return err
	}
	r := newFrameReader(sh.log)
	from, arrival, kept := r.hint(entries, size)
	end, last, err := r.scanEnd(from, arrival)
	if err != nil {
		return err
	}
	if end < size {
		if err := sh.cutTail(end, size); err != nil {
			return err
		}
	}
	// Drop index entries at or past the valid end (they pointed into the cut
	// tail) and any torn entry bytes.
	for kept > 0 && entries[kept-1].offset >= end {
		kept--
	}
	if st, err := sh.idx.Stat(); err != nil {
		return err
	} else if st.Size() != int64(kept*indexEntryLen) {
		if err := sh.idx.Truncate(int64(kept * indexEntryLen)); err != nil {
			return err
		}
	}
	sh.end, sh.lastArrival, sh.lastIndexed = end, last, 0
	if kept > 0 {
		sh.lastIndexed = entries[kept-1].offset
	}
	return nil
}

// cutTail moves log bytes [end, size) to a side file and truncates the log.
func (sh *fileShard) cutTail(end, size int64) error {
	tail := make([]byte, size-end)
	if _, err := sh.log.ReadAt(tail, end); err != nil && err != io.EOF {
		return err
	}
	side := fmt.Sprintf("%s.tail-%0*d", sh.logPath, seqDigits, end)
	if err := os.WriteFile(side, tail, 0o644); err != nil {
		return fmt.Errorf("saving torn tail: %w", err)
	}
	if err := sh.log.Truncate(end); err != nil {
		return err
	}
	if err := sh.log.Sync(); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(sh.logPath))
}

func (sh *fileShard) append(batch []Entry, opts FileOptions) error {
	arrival := opts.Now().UnixNano()
	if arrival < sh.lastArrival {
		arrival = sh.lastArrival // arrival times never go back within a shard
	}
	size := 0
	for _, e := range batch {
		size += frameHeaderLen + bodyFixedLen + len(e.PartitionKey) + len(e.Data)
	}
	if cap(sh.frames) < size || cap(sh.frames) > max(4*size, 64<<20) { // not kept oversized after one huge batch
		sh.frames = make([]byte, 0, size)
	}
	buf := sh.frames[:0]
	for _, e := range batch {
		buf = appendFrame(buf, arrival, e.PartitionKey, e.Data)
	}
	start := sh.end
	if _, err := sh.log.WriteAt(buf, start); err != nil {
		// Whole frames of a partly written batch may already have been read
		// (readers take no lock), so they are not cut away: recovery before the
		// next append keeps every whole frame and cuts only a torn tail. The
		// caller retries the batch, so those records may repeat, under the same
		// partition key (request_id), which consumers deduplicate.
		sh.end = 0
		return err
	}
	if err := sh.log.Sync(); err != nil {
		sh.end = 0 // unknown state: recover before the next append
		return err
	}
	sh.end = start + int64(len(buf))
	sh.lastArrival = arrival
	if sh.lastIndexed == 0 || start-sh.lastIndexed >= opts.IndexInterval {
		// The index is a hint: written after the log is durable, not fsynced,
		// and checked against the log before use.
		var e [indexEntryLen]byte
		binary.LittleEndian.PutUint64(e[0:], uint64(start))
		binary.LittleEndian.PutUint64(e[8:], uint64(arrival))
		binary.LittleEndian.PutUint32(e[16:], crc32.Checksum(e[:16], castagnoli))
		st, err := sh.idx.Stat()
		if err == nil {
			n := st.Size() / indexEntryLen * indexEntryLen
			if _, err = sh.idx.WriteAt(e[:], n); err == nil {
				sh.lastIndexed = start
			}
		}
	}
	return nil
}

func appendFrame(buf []byte, arrival int64, key string, data []byte) []byte {
	bodyLen := bodyFixedLen + len(key) + len(data)
	h := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(bodyLen))
	buf = binary.LittleEndian.AppendUint32(buf, 0)
	b := len(buf)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(arrival))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(key)))
	buf = append(buf, key...)
	buf = append(buf, data...)
	binary.LittleEndian.PutUint32(buf[h+4:], crc32.Checksum(buf[b:], castagnoli))
	return buf
}

func checkMagic(f *os.File) error {
	var m [len(fileMagic)]byte
	if _, err := f.ReadAt(m[:], 0); err != nil {
		return fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if string(m[:]) != fileMagic {
		return fmt.Errorf("%s is not a stream shard log", f.Name())
	}
	return nil
}

type indexEntry struct {
	offset  int64
	arrival int64
}

// readIndex returns the index's whole, valid entries, stopping at the first
// torn or corrupt one. A missing index is empty.
func readIndex(f *os.File) ([]indexEntry, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	var out []indexEntry
	for len(b) >= indexEntryLen {
		if crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
			break
		}
		e := indexEntry{int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))}
		if len(out) > 0 && e.offset <= out[len(out)-1].offset {
			break
		}
		out = append(out, e)
		b = b[indexEntryLen:]
	}
	return out, nil
}

func readIndexFile(path string) ([]indexEntry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readIndex(f)
}

// frameStatus is what parsing at an offset found.
type frameStatus int

const (
	frameOK         frameStatus = iota
	frameIncomplete             // the frame runs past the end of the file (yet)
	frameCorrupt                // bad length or CRC
)

// frameReader parses frames from a log through a read-ahead buffer.
type frameReader struct {
	f      *os.File
	buf    []byte
	bufOff int64
	// arena holds the data of the records returned, copied out of buf: one
	// allocation per arenaBytes of records instead of one per record. A full
	// arena is left to the records that use it, never written again.
	arena []byte
	// strs holds the records' partition keys and sequence numbers the
	// same way (a strings.Builder never changes bytes it has written).
	strs strings.Builder
}

// str returns b as a string cut from r.strs.
func (r *frameReader) str(b []byte) string {
	if len(b) > arenaBytes/64 {
		return string(b)
	}
	if r.strs.Cap()-r.strs.Len() < len(b) {
		r.strs = strings.Builder{}
		r.strs.Grow(arenaBytes / 8)
	}
	off := r.strs.Len()
	r.strs.Write(b)
	return r.strs.String()[off:]
}

// arenaBytes is the size of a frameReader's arenas.
const arenaBytes = 1 << 20

// keep copies b out of the read buffer into the arena and returns the copy,
// capped so that appending to it cannot reach the next record's bytes.
func (r *frameReader) keep(b []byte) []byte {
	if len(b) > arenaBytes/8 {
		return bytes.Clone(b)
	}
	if cap(r.arena)-len(r.arena) < len(b) {
		r.arena = make([]byte, 0, arenaBytes)
	}
	n := len(r.arena)
	r.arena = append(r.arena, b...)
	return r.arena[n:len(r.arena):len(r.arena)]
}

func newFrameReader(f *os.File) *frameReader { return &frameReader{f: f} }

// bytesAt returns up to n bytes at off; fewer only at the end of the file.
func (r *frameReader) bytesAt(off int64, n int) ([]byte, error) {
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		return r.buf[off-r.bufOff : off-r.bufOff+int64(n)], nil
	}
	size := n
	if size < 256<<10 {
		size = 256 << 10
	}
	if cap(r.buf) < size {
		r.buf = make([]byte, size)
	}
	r.buf = r.buf[:size]
	m, err := r.f.ReadAt(r.buf, off)
	if err != nil && err != io.EOF {
		r.buf = r.buf[:0]
		return nil, err
	}
	r.buf, r.bufOff = r.buf[:m], off
	if m < n {
		return r.buf, nil
	}
	return r.buf[:n], nil
}

// invalidate drops buffered bytes so the next read sees the file anew.
func (r *frameReader) invalidate() { r.buf = r.buf[:0] }

// frame parses the frame at off. The returned record shares no memory with
// the read buffer (its data is in an arena no later record overwrites).
func (r *frameReader) frame(off int64) (rec Record, next int64, st frameStatus, err error) {
	h, err := r.bytesAt(off, frameHeaderLen)
	if err != nil {
		return rec, 0, 0, err
	}
	if len(h) < frameHeaderLen {
		return rec, 0, frameIncomplete, nil
	}
	bodyLen := int(binary.LittleEndian.Uint32(h))
	sum := binary.LittleEndian.Uint32(h[4:])
	if bodyLen < bodyFixedLen || bodyLen > maxBodyLen {
		return rec, 0, frameCorrupt, nil
	}
	b, err := r.bytesAt(off+frameHeaderLen, bodyLen)
	if err != nil {
		return rec, 0, 0, err
	}
	if len(b) < bodyLen {
		return rec, 0, frameIncomplete, nil
	}
	if crc32.Checksum(b, castagnoli) != sum {
		return rec, 0, frameCorrupt, nil
	}
	keyLen := int(binary.LittleEndian.Uint16(b[8:]))
	if bodyFixedLen+keyLen > bodyLen {
		return rec, 0, frameCorrupt, nil
	}
	var seq [seqDigits]byte
	rec = Record{
		SequenceNumber: r.str(appendFileSeq(seq[:0], off)),
		PartitionKey:   r.str(b[bodyFixedLen : bodyFixedLen+keyLen]),
		Arrival:        time.Unix(0, int64(binary.LittleEndian.Uint64(b))).UTC(),
		Data:           r.keep(b[bodyFixedLen+keyLen:]),
	}
	if rec.Data == nil {
		rec.Data = []byte{}
	}
	return rec, off + frameHeaderLen + int64(bodyLen), frameOK, nil
}

// hint returns where to start scanning for the valid end: the last index
// entry below size whose frame checks out, with its arrival, and how many
// entries are trusted. Without one, the start of the log.
func (r *frameReader) hint(entries []indexEntry, size int64) (from, arrival int64, kept int) {
	for k := len(entries) - 1; k >= 0; k-- {
		e := entries[k]
		if e.offset >= size {
			continue
		}
		rec, _, st, err := r.frame(e.offset)
		if err == nil && st == frameOK && rec.Arrival.UnixNano() == e.arrival {
			return e.offset, e.arrival, k + 1
		}
	}
	return int64(len(fileMagic)), 0, 0
}

// scanEnd walks whole frames from off and returns the end of the last one and
// its arrival time (or arrival if there is none).
func (r *frameReader) scanEnd(off, arrival int64) (int64, int64, error) {
	for {
		rec, next, st, err := r.frame(off)
		if err != nil {
			return 0, 0, err
		}
		if st != frameOK {
			return off, arrival, nil
		}
		off, arrival = next, rec.Arrival.UnixNano()
	}
}

// Open starts reading a shard. Readers take no lock and may run while
// writers append, in this process or another.
func (s *FileStream) Open(ctx context.Context, shardID string, from Start) (Iterator, error) {
	var sh *fileShard
	for _, c := range s.shards {
		if c.id == shardID {
			sh = c
		}
	}
	if sh == nil {
		return nil, fmt.Errorf("file stream %s: no shard %q", s.dir, shardID)
	}
	f, err := os.Open(sh.logPath)
	if errors.Is(err, os.ErrNotExist) && s.opts.ReadOnly && from.Kind != AfterSequence {
		// No writer has opened the stream yet: wait for the log at its start.
		return &fileIterator{shardID: sh.id, path: sh.logPath, pos: int64(len(fileMagic)), notBefore: startTime(from)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file stream %s: %w", s.dir, err)
	}
	it := &fileIterator{shardID: sh.id, path: sh.logPath, f: f, r: newFrameReader(f), pos: int64(len(fileMagic))}
	if err := it.seek(sh.idxPath, from); err != nil {
		f.Close()
		return nil, fmt.Errorf("file stream %s: opening %s: %w", s.dir, shardID, err)
	}
	return it, nil
}

func startTime(from Start) int64 {
	if from.Kind == AtTimestamp {
		return from.Time.UnixNano()
	}
	return 0
}

type fileIterator struct {
	path      string
	f         *os.File // nil until the shard log exists
	r         *frameReader
	pos       int64
	notBefore int64 // skip records that arrived before this (AtTimestamp)
	shardID   string
	atEnd     bool // the last Next stopped where the writers had got to
}

var _ CaughtUpper = (*fileIterator)(nil)

// CaughtUp reports whether the last Next read up to the end of the log as it
// stood (or up to a torn frame a writer has yet to repair).
func (it *fileIterator) CaughtUp() bool { return it.atEnd }

func (it *fileIterator) seek(idxPath string, from Start) error {
	st, err := it.f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size < int64(len(fileMagic)) {
		if from.Kind == AfterSequence {
			return fmt.Errorf("sequence number %s is past the end of the shard", from.Sequence)
		}
		it.notBefore = startTime(from)
		return nil
	}
	if err := checkMagic(it.f); err != nil {
		return err
	}
	switch from.Kind {
	case TrimHorizon:
	case Latest:
		entries, err := readIndexFile(idxPath)
		if err != nil {
			return err
		}
		start, arrival, _ := it.r.hint(entries, size)
		it.pos, _, err = it.r.scanEnd(start, arrival)
		return err
	case AtTimestamp:
		t := from.Time.UnixNano()
		it.notBefore = t
		entries, err := readIndexFile(idxPath)
		if err != nil {
			return err
		}
		// Arrival times never decrease within a shard, so start at the last
		// indexed frame that arrived before t (checked against the log).
		k := sort.Search(len(entries), func(i int) bool { return entries[i].arrival >= t })
		for k--; k >= 0; k-- {
			e := entries[k]
			if e.offset >= size {
				continue
			}
			rec, _, st, err := it.r.frame(e.offset)
			if err != nil {
				return err
			}
			if st == frameOK && rec.Arrival.UnixNano() == e.arrival {
				it.pos = e.offset
				break
			}
		}
	case AfterSequence:
		off, err := ParseFileSeq(from.Sequence)
		if err != nil {
			return err
		}
		if off < int64(len(fileMagic)) {
			return fmt.Errorf("sequence number %q is not in this shard", from.Sequence)
		}
		_, next, st, err := it.r.frame(off)
		if err != nil {
			return err
		}
		if st != frameOK {
			return fmt.Errorf("sequence number %s is not a record of this shard", from.Sequence)
		}
		it.pos = next
	default:
		return fmt.Errorf("unknown start kind %d", from.Kind)
	}
	return nil
}

// Next returns up to max whole, checked records; an empty batch when it has
// caught up with the writers or stands before a torn or corrupt frame, which
// it never returns (a writer's repair lets it go on).
func (it *fileIterator) Next(ctx context.Context, max int) ([]Record, error) {
	it.atEnd = false
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = 1
	}
	if it.f == nil {
		f, err := os.Open(it.path)
		if errors.Is(err, os.ErrNotExist) {
			it.atEnd = true
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		it.f, it.r = f, newFrameReader(f)
	}
	if it.pos == int64(len(fileMagic)) {
		if st, err := it.f.Stat(); err != nil {
			return nil, err
		} else if st.Size() < int64(len(fileMagic)) {
			it.atEnd = true
			return nil, nil
		}
	}
	// Bytes past the buffer may have been appended since the last call.
	it.r.invalidate()
	var out []Record
	for len(out) < max {
		rec, next, st, err := it.r.frame(it.pos)
		if err != nil {
			return out, fmt.Errorf("reading %s: %w", it.path, err)
		}
		if st != frameOK {
			it.atEnd = true
			break
		}
		it.pos = next
		if rec.Arrival.UnixNano() < it.notBefore {
			continue
		}
		it.notBefore = 0
		rec.ShardID = it.shardID
		if out == nil {
			out = make([]Record, 0, min(max, 1<<15))
		}
		out = append(out, rec)
	}
	return out, nil
}

func (it *fileIterator) Close() error {
	if it.f == nil {
		return nil
	}
	err := it.f.Close()
	it.f = nil
	return err
}

// FormatFileSeq returns the sequence number of the record at a log offset:
// the offset zero-padded to 20 digits, so that sequence numbers sort as strings.
func FormatFileSeq(offset int64) string {
	if offset < 0 {
		return fmt.Sprintf("%0*d", seqDigits, offset)
	}
	var b [seqDigits]byte
	return string(appendFileSeq(b[:0], offset))
}

// appendFileSeq appends FormatFileSeq(offset) of an offset >= 0 to b.
func appendFileSeq(b []byte, offset int64) []byte {
	// 20 digits hold every non-negative int64.
	n := len(b)
	for range seqDigits {
		b = append(b, '0')
	}
	for i := len(b) - 1; i >= n; i-- {
		b[i] = byte('0' + offset%10)
		offset /= 10
	}
	return b
}

// ParseFileSeq returns the log offset a file stream sequence number names.
func ParseFileSeq(seq string) (int64, error) {
	off, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("sequence number %q is not a file stream sequence number", seq)
	}
	return off, nil
}

// CompareSeq orders two sequence numbers of one shard, file or Kinesis:
// both are decimal integers (Kinesis's too long for 64 bits), compared by
// value; a record unpacked from a KPL aggregate ("BASE:NNNNN") sorts after
// BASE and before the next record. It returns -1, 0 or +1.
func CompareSeq(a, b string) int { return compareKinesisSeq(a, b) }

var (
	_ Producer = (*FileStream)(nil)
	_ Source   = (*FileStream)(nil)
)
