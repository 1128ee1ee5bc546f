package stream

// Tests of the embedded file stream. No servers; TestFileMultiProcessWriters
// re-runs this test binary as two writer processes.

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var fileT0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// fileClock is a settable fileClock for arrival times.
type fileClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fileClock) Now() time.Time       { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fileClock) Set(t time.Time)      { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func newFileClock(t time.Time) *fileClock { return &fileClock{t: t} }
func fileEntry(key, data string) Entry    { return Entry{PartitionKey: key, Data: []byte(data)} }

func openFileStream(t *testing.T, dir string, opts FileOptions) *FileStream {
	t.Helper()
	s, err := OpenFile(dir, opts)
	if err != nil {
		t.Fatalf("OpenFile(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func filePut(t *testing.T, s *FileStream, entries ...Entry) {
	t.Helper()
	if err := s.Put(t.Context(), entries); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func fileIter(t *testing.T, s *FileStream, shard string, from Start) Iterator {
	t.Helper()
	it, err := s.Open(t.Context(), shard, from)
	if err != nil {
		t.Fatalf("Open(%s, %+v): %v", shard, from, err)
	}
	t.Cleanup(func() { it.Close() })
	return it
}

// fileDrain reads until an empty batch.
func fileDrain(t *testing.T, it Iterator, max int) []Record {
	t.Helper()
	var out []Record
	for {
		recs, err := it.Next(t.Context(), max)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(recs) == 0 {
			return out
		}
		if len(recs) > max {
			t.Fatalf("Next(%d) returned %d records", max, len(recs))
		}
		out = append(out, recs...)
	}
}

func recordData(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Data)
	}
	return out
}

func wantFileData(t *testing.T, recs []Record, want ...string) {
	t.Helper()
	got := recordData(recs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records = %q, want %q", got, want)
	}
}

func fileShard0Log(dir string) string { return filepath.Join(dir, ShardName(0)+".log") }

func TestFileAppendReadOrder(t *testing.T) {
	dir := t.TempDir()
	clk := newFileClock(fileT0)
	s := openFileStream(t, dir, FileOptions{Now: clk.Now})
	filePut(t, s, fileEntry("req-1", `{"request_id":"req-1","input_tokens":12}`), fileEntry("req-2", `{"request_id":"req-2"}`))
	clk.Set(fileT0.Add(time.Second))
	filePut(t, s, fileEntry("req-3", "three"), Entry{PartitionKey: "req-4"})

	it := fileIter(t, s, ShardName(0), Start{Kind: TrimHorizon})
	recs := fileDrain(t, it, 3)
	wantFileData(t, recs, `{"request_id":"req-1","input_tokens":12}`, `{"request_id":"req-2"}`, "three", "")
	for i, r := range recs {
		if r.ShardID != "shardId-000000000000" {
			t.Errorf("record %d: shard %q", i, r.ShardID)
		}
		if want := fmt.Sprintf("req-%d", i+1); r.PartitionKey != want {
			t.Errorf("record %d: key %q, want %q", i, r.PartitionKey, want)
		}
		if len(r.SequenceNumber) != 20 {
			t.Errorf("record %d: sequence %q is not 20 digits", i, r.SequenceNumber)
		}
		if i > 0 {
			prev := recs[i-1].SequenceNumber
			if !(prev < r.SequenceNumber) || CompareSeq(prev, r.SequenceNumber) != -1 {
				t.Errorf("sequence %s does not sort after %s", r.SequenceNumber, prev)
			}
		}
	}
	if !recs[0].Arrival.Equal(fileT0) || !recs[2].Arrival.Equal(fileT0.Add(time.Second)) {
		t.Errorf("arrivals = %v, %v; want %v, %v", recs[0].Arrival, recs[2].Arrival, fileT0, fileT0.Add(time.Second))
	}
	if recs[3].Data == nil {
		t.Errorf("empty data read back as nil")
	}

	// Caught up: empty batch, nil error; then new records appear.
	if recs, err := it.Next(t.Context(), 10); err != nil || len(recs) != 0 {
		t.Fatalf("caught-up Next = %d records, %v", len(recs), err)
	}
	filePut(t, s, fileEntry("req-5", "five"))
	wantFileData(t, fileDrain(t, it, 10), "five")

	// Reopen: everything is still there, and a checkpoint resumes after its record.
	s.Close()
	s2 := openFileStream(t, dir, FileOptions{Now: clk.Now})
	all := fileDrain(t, fileIter(t, s2, ShardName(0), Start{Kind: TrimHorizon}), 100)
	wantFileData(t, all, `{"request_id":"req-1","input_tokens":12}`, `{"request_id":"req-2"}`, "three", "", "five")
	after := fileDrain(t, fileIter(t, s2, ShardName(0), Start{Kind: AfterSequence, Sequence: all[1].SequenceNumber}), 100)
	wantFileData(t, after, "three", "", "five")
	last := fileIter(t, s2, ShardName(0), Start{Kind: AfterSequence, Sequence: all[4].SequenceNumber})
	wantFileData(t, fileDrain(t, last, 10))

	// Latest sees only what is appended after it opens.
	latest := fileIter(t, s2, ShardName(0), Start{Kind: Latest})
	wantFileData(t, fileDrain(t, latest, 10))
	filePut(t, s2, fileEntry("req-6", "six"))
	wantFileData(t, fileDrain(t, latest, 10), "six")
	wantFileData(t, fileDrain(t, last, 10), "six")

	// A sequence number that is not a record boundary is refused.
	bad := fmt.Sprintf("%020d", mustFileSeq(t, all[1].SequenceNumber)+3)
	if _, err := s2.Open(t.Context(), ShardName(0), Start{Kind: AfterSequence, Sequence: bad}); err == nil {
		t.Errorf("Open after non-boundary sequence %s: no error", bad)
	}
	if _, err := s2.Open(t.Context(), "shardId-000000000009", Start{}); err == nil {
		t.Errorf("Open of unknown shard: no error")
	}
}

func mustFileSeq(t *testing.T, seq string) int64 {
	off, err := ParseFileSeq(seq)
	if err != nil {
		t.Fatal(err)
	}
	return off
}

func TestFilePutValidation(t *testing.T) {
	s := openFileStream(t, t.TempDir(), FileOptions{})
	for name, e := range map[string]Entry{
		"empty key":  {Data: []byte("x")},
		"long key":   {PartitionKey: string(bytes.Repeat([]byte("k"), 257)), Data: []byte("x")},
		"large data": {PartitionKey: "k", Data: make([]byte, MaxRecordBytes)},
	} {
		if err := s.Put(t.Context(), []Entry{e}); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: Put = %v, want ErrInvalidEntry", name, err)
		}
	}
	filePut(t, s, Entry{PartitionKey: strings.Repeat("é", 256), Data: make([]byte, MaxRecordBytes-512)})

	ro := openFileStream(t, s.Dir(), FileOptions{ReadOnly: true})
	if err := ro.Put(t.Context(), []Entry{fileEntry("k", "v")}); err == nil {
		t.Errorf("read-only Put: no error")
	}
	if recs := fileDrain(t, fileIter(t, ro, ShardName(0), Start{}), 10); len(recs) != 1 || len(recs[0].Data) != MaxRecordBytes-512 || recs[0].PartitionKey != strings.Repeat("é", 256) {
		t.Errorf("read back %d records", len(recs))
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "none"), FileOptions{ReadOnly: true}); err == nil {
		t.Errorf("read-only open of a missing stream: no error")
	}
}

func TestFileAtTimestamp(t *testing.T) {
	for _, interval := range []int64{1, 0} { // an index entry per batch; the default (scan)
		t.Run(fmt.Sprintf("index-interval-%d", interval), func(t *testing.T) {
			clk := newFileClock(fileT0)
			s := openFileStream(t, t.TempDir(), FileOptions{Now: clk.Now, IndexInterval: interval})
			for m := 0; m < 10; m++ {
				clk.Set(fileT0.Add(time.Duration(m) * time.Minute))
				filePut(t, s, fileEntry(fmt.Sprintf("a-%d", m), fmt.Sprintf("m%d-a", m)), fileEntry(fmt.Sprintf("b-%d", m), fmt.Sprintf("m%d-b", m)))
			}
			at := func(ts time.Time) []string {
				return recordData(fileDrain(t, fileIter(t, s, ShardName(0), Start{Kind: AtTimestamp, Time: ts}), 3))
			}
			cases := []struct {
				at   time.Time
				want []string
			}{
				{fileT0.Add(-time.Hour), nil}, // all 20, checked by count below
				{fileT0.Add(7 * time.Minute), []string{"m7-a", "m7-b", "m8-a", "m8-b", "m9-a", "m9-b"}},
				{fileT0.Add(7*time.Minute + time.Nanosecond), []string{"m8-a", "m8-b", "m9-a", "m9-b"}},
				{fileT0.Add(9 * time.Minute), []string{"m9-a", "m9-b"}},
				{fileT0.Add(time.Hour), []string{}},
			}
			if got := at(cases[0].at); len(got) != 20 || got[0] != "m0-a" || got[19] != "m9-b" {
				t.Fatalf("from before the first record: %q", got)
			}
			for _, c := range cases[1:] {
				if got := at(c.at); fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Errorf("AtTimestamp(%s) = %q, want %q", c.at.Format(time.TimeOnly), got, c.want)
				}
			}

			// A position in the future waits for records arriving at or after it.
			future := fileIter(t, s, ShardName(0), Start{Kind: AtTimestamp, Time: fileT0.Add(time.Hour)})
			clk.Set(fileT0.Add(30 * time.Minute))
			filePut(t, s, fileEntry("early", "early"))
			clk.Set(fileT0.Add(time.Hour))
			filePut(t, s, fileEntry("on-time", "on-time"))
			wantFileData(t, fileDrain(t, future, 10), "on-time")

			// The fileClock going back never makes arrival times decrease.
			clk.Set(fileT0)
			filePut(t, s, fileEntry("late", "late"))
			recs := fileDrain(t, fileIter(t, s, ShardName(0), Start{Kind: AtTimestamp, Time: fileT0.Add(time.Hour)}), 10)
			wantFileData(t, recs, "on-time", "late")
			if !recs[1].Arrival.Equal(fileT0.Add(time.Hour)) {
				t.Errorf("arrival after the fileClock went back = %v", recs[1].Arrival)
			}
		})
	}
}

func TestFileTornTail(t *testing.T) {
	for _, cut := range []struct {
		name  string
		bytes int64 // how much of the last record is removed
	}{
		{"mid-data", 3},
		{"mid-header", int64(frameHeaderLen+bodyFixedLen+len("req-3")+len("third record")) - 4},
		{"header-only", int64(bodyFixedLen + len("req-3") + len("third record"))},
	} {
		t.Run(cut.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openFileStream(t, dir, FileOptions{IndexInterval: 1})
			filePut(t, s, fileEntry("req-1", "first record"))
			filePut(t, s, fileEntry("req-2", "second record"))
			filePut(t, s, fileEntry("req-3", "third record"))
			s.Close()
			st, err := os.Stat(fileShard0Log(dir))
			if err != nil {
				t.Fatal(err)
			}
			// A crash mid-append leaves part of the last record.
			if err := os.Truncate(fileShard0Log(dir), st.Size()-cut.bytes); err != nil {
				t.Fatal(err)
			}

			// A reader (no writer yet) stops before the torn record.
			ro := openFileStream(t, dir, FileOptions{ReadOnly: true})
			waiting := fileIter(t, ro, ShardName(0), Start{Kind: TrimHorizon})
			wantFileData(t, fileDrain(t, waiting, 10), "first record", "second record")
			wantFileData(t, fileDrain(t, fileIter(t, ro, ShardName(0), Start{Kind: AtTimestamp, Time: time.Now().Add(-time.Hour)}), 10), "first record", "second record")

			// The next writer truncates the torn tail, keeps the cut bytes aside and appends.
			w := openFileStream(t, dir, FileOptions{})
			side, _ := filepath.Glob(fileShard0Log(dir) + ".tail-*")
			if len(side) != 1 {
				t.Fatalf("side files of the cut tail: %q", side)
			}
			if b, _ := os.ReadFile(side[0]); int64(len(b)) != st.Size()-cut.bytes-mustFileSeq(t, filepath.Ext(side[0])[len(".tail-"):]) {
				t.Errorf("side file holds %d bytes", len(b))
			}
			filePut(t, w, fileEntry("req-4", "fourth record"))
			wantFileData(t, fileDrain(t, waiting, 10), "fourth record")
			wantFileData(t, fileDrain(t, fileIter(t, w, ShardName(0), Start{Kind: TrimHorizon}), 10), "first record", "second record", "fourth record")
		})
	}
}

func TestFileCorruptCRC(t *testing.T) {
	dir := t.TempDir()
	s := openFileStream(t, dir, FileOptions{})
	filePut(t, s, fileEntry("req-1", "first record"), fileEntry("req-2", "second record"), fileEntry("req-3", "third record"))
	recs := fileDrain(t, fileIter(t, s, ShardName(0), Start{}), 10)
	s.Close()

	flip := func(seq string, delta int64) {
		t.Helper()
		f, err := os.OpenFile(fileShard0Log(dir), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		off := mustFileSeq(t, seq) + delta
		f.ReadAt(b, off)
		b[0] ^= 0x20
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	// A flipped bit in the last record's data: the record is never returned.
	flip(recs[2].SequenceNumber, frameHeaderLen+bodyFixedLen+int64(len("req-3"))+2)
	ro := openFileStream(t, dir, FileOptions{ReadOnly: true})
	wantFileData(t, fileDrain(t, fileIter(t, ro, ShardName(0), Start{}), 10), "first record", "second record")

	// A corrupt length field in the middle: reading stops before it.
	flip(recs[1].SequenceNumber, 3)
	wantFileData(t, fileDrain(t, fileIter(t, ro, ShardName(0), Start{}), 10), "first record")

	// A writer cuts from the first bad frame (the bytes go to a side file), then appends.
	w := openFileStream(t, dir, FileOptions{})
	side := fileShard0Log(dir) + ".tail-" + recs[1].SequenceNumber
	if b, err := os.ReadFile(side); err != nil || !bytes.Contains(b, []byte("second record")) {
		t.Errorf("side file %s: %v, %q", side, err, b)
	}
	filePut(t, w, fileEntry("req-4", "fourth record"))
	wantFileData(t, fileDrain(t, fileIter(t, w, ShardName(0), Start{}), 10), "first record", "fourth record")
}

func TestFileConcurrentReader(t *testing.T) {
	const n = 3000
	clk := newFileClock(fileT0)
	s := openFileStream(t, t.TempDir(), FileOptions{Now: clk.Now, IndexInterval: 4096})
	ro := openFileStream(t, s.Dir(), FileOptions{ReadOnly: true})
	it := fileIter(t, ro, ShardName(0), Start{Kind: TrimHorizon})

	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; {
			var batch []Entry
			for j := 0; j < 1+i%7 && i < n; j++ {
				batch = append(batch, fileEntry(fmt.Sprintf("req-%d", i), fmt.Sprintf("%d:%s", i, bytes.Repeat([]byte{'x'}, i%300))))
				i++
			}
			if err := s.Put(context.Background(), batch); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var got []Record
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		recs, err := it.Next(t.Context(), 100)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, recs...)
	}
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	got = append(got, fileDrain(t, it, 100)...)
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if want := fmt.Sprintf("%d:%s", i, bytes.Repeat([]byte{'x'}, i%300)); string(r.Data) != want {
			t.Fatalf("record %d = %.20q, want %.20q", i, r.Data, want)
		}
	}
}

// TestFileMultiProcessWriters runs two writer processes on one shard while
// this process reads: each writer's records stay whole and in its order.
func TestFileMultiProcessWriters(t *testing.T) {
	if dir := os.Getenv("METER_STREAM_TEST_WRITER_DIR"); dir != "" {
		fileWriterProcess(t, dir, os.Getenv("METER_STREAM_TEST_WRITER_NAME"))
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	const perWriter = 400
	dir := t.TempDir()
	ro := openFileStream(t, dir, FileOptions{Shards: 2})
	its := []Iterator{fileIter(t, ro, ShardName(0), Start{}), fileIter(t, ro, ShardName(1), Start{})}
	var cmds []*exec.Cmd
	for _, name := range []string{"w1", "w2"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileMultiProcessWriters$")
		cmd.Env = append(os.Environ(), "METER_STREAM_TEST_WRITER_DIR="+dir, "METER_STREAM_TEST_WRITER_NAME="+name)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("writer %s output:\n%s", name, out.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	waitErr := make(chan error, len(cmds))
	for _, c := range cmds {
		go func() { waitErr <- c.Wait() }()
	}
	var got []Record
	for finished := 0; finished < len(cmds); {
		select {
		case err := <-waitErr:
			if err != nil {
				t.Fatalf("writer process: %v", err)
			}
			finished++
		case <-time.After(5 * time.Millisecond):
		}
		for _, it := range its {
			recs, err := it.Next(t.Context(), 50)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, recs...)
		}
	}
	for _, it := range its {
		got = append(got, fileDrain(t, it, 100)...)
	}
	if len(got) != 2*perWriter {
		t.Fatalf("read %d records, want %d", len(got), 2*perWriter)
	}
	next := map[string]int{}
	for _, r := range got {
		var name string
		var i int
		if _, err := fmt.Sscanf(string(r.Data), "%s %d", &name, &i); err != nil {
			t.Fatalf("record %q: %v", r.Data, err)
		}
		if want := ro.ShardFor(r.PartitionKey); r.ShardID != want {
			t.Errorf("key %s in %s, want %s", r.PartitionKey, r.ShardID, want)
		}
		// Within a shard a writer's records keep its order.
		k := name + "/" + r.ShardID
		if i < next[k] {
			t.Errorf("%s: record %d after %d", k, i, next[k])
		}
		next[k] = i
	}
}

func fileWriterProcess(t *testing.T, dir, name string) {
	s, err := OpenFile(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 400; i += 4 {
		var batch []Entry
		for j := i; j < i+4; j++ {
			batch = append(batch, fileEntry(fmt.Sprintf("%s-req-%d", name, j), fmt.Sprintf("%s %d", name, j)))
		}
		if err := s.Put(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFileShards(t *testing.T) {
	dir := t.TempDir()
	s := openFileStream(t, dir, FileOptions{Shards: 4})
	shards, err := s.Shards(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"}
	for i, sh := range shards {
		if sh.ID != want[i] || len(sh.Parents) != 0 {
			t.Errorf("shard %d = %+v", i, sh)
		}
	}
	if len(shards) != 4 {
		t.Fatalf("%d shards", len(shards))
	}
	var entries []Entry
	for i := 0; i < 400; i++ {
		entries = append(entries, fileEntry(fmt.Sprintf("req-%04d", i), strconv.Itoa(i)))
	}
	filePut(t, s, entries...)
	total := 0
	for _, sh := range shards {
		recs := fileDrain(t, fileIter(t, s, sh.ID, Start{}), 1000)
		if len(recs) < 50 {
			t.Errorf("%s holds %d of 400 records: routing is skewed", sh.ID, len(recs))
		}
		prev := -1
		for _, r := range recs {
			// Kinesis's ranges for 4 shards split the MD5 space by its top two bits.
			sum := md5.Sum([]byte(r.PartitionKey))
			if got := ShardName(int(sum[0] >> 6)); got != sh.ID || s.ShardFor(r.PartitionKey) != sh.ID {
				t.Errorf("key %s read from %s, its hash says %s", r.PartitionKey, sh.ID, got)
			}
			i, _ := strconv.Atoi(string(r.Data))
			if i <= prev {
				t.Errorf("%s: %d after %d", sh.ID, i, prev)
			}
			prev = i
		}
		total += len(recs)
	}
	if total != 400 {
		t.Errorf("read %d records, want 400", total)
	}
	s.Close()

	if _, err := OpenFile(dir, FileOptions{Shards: 2}); err == nil {
		t.Errorf("reopening 4 shards as 2: no error")
	}
	again := openFileStream(t, dir, FileOptions{})
	if sh, _ := again.Shards(t.Context()); len(sh) != 4 {
		t.Errorf("reopened with %d shards", len(sh))
	}
}

func TestShardIndexKinesisRanges(t *testing.T) {
	// The ranges Kinesis gives a new stream: for 3 shards, shard 1 starts at
	// 113427455640312821154458202477256070485 and shard 2 at ...226854911280625642308916404954512140970.
	for _, c := range []struct {
		n    int
		hash string
		want int
	}{
		{3, "113427455640312821154458202477256070484", 0},
		{3, "113427455640312821154458202477256070485", 1},
		{3, "226854911280625642308916404954512140969", 1},
		{3, "226854911280625642308916404954512140970", 2},
		{3, "340282366920938463463374607431768211455", 2},
		{2, "170141183460469231731687303715884105727", 0},
		{2, "170141183460469231731687303715884105728", 1},
		{1, "340282366920938463463374607431768211455", 0},
		{4, "0", 0},
	} {
		h, ok := new(big.Int).SetString(c.hash, 10)
		if !ok {
			t.Fatal(c.hash)
		}
		if got := shardOfHash(h, c.n); got != c.want {
			t.Errorf("%d shards, hash %s: shard %d, want %d", c.n, c.hash, got, c.want)
		}
	}
}

func TestCompareSeq(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"00000000000000000008", "00000000000000000008", 0},
		{"00000000000000000008", "00000000000000000030", -1},
		{"00000000000000001000", "00000000000000000999", 1},
		{"49590338271490256608559692538361571095921575989136588898", "49590338271490256608559692538361571095921575989136588898", 0},
		{"49590338271490256608559692538361571095921575989136588898", "49590338271490256608559692540925702759324208523137515618", -1},
		{"9", "10", -1},
		{"100", "99", 1},
		{"", "0", 0},
	} {
		if got := CompareSeq(c.a, c.b); got != c.want {
			t.Errorf("CompareSeq(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareSeq(c.b, c.a); got != -c.want {
			t.Errorf("CompareSeq(%s, %s) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
	seqs := []string{FormatFileSeq(1000), FormatFileSeq(8), FormatFileSeq(99)}
	sort.Strings(seqs)
	if seqs[0] != FormatFileSeq(8) || seqs[2] != FormatFileSeq(1000) {
		t.Errorf("file sequence numbers do not sort as strings: %q", seqs)
	}
}

// TestFileZeroFilledTail covers a power loss that left the log longer than
// what reached the disk: the tail reads as zeros.
func TestFileZeroFilledTail(t *testing.T) {
	dir := t.TempDir()
	s := openFileStream(t, dir, FileOptions{})
	filePut(t, s, fileEntry("req-1", "first record"), fileEntry("req-2", "second record"))
	s.Close()
	f, err := os.OpenFile(fileShard0Log(dir), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 4096))
	f.Close()

	ro := openFileStream(t, dir, FileOptions{ReadOnly: true})
	wantFileData(t, fileDrain(t, fileIter(t, ro, ShardName(0), Start{}), 10), "first record", "second record")
	w := openFileStream(t, dir, FileOptions{})
	filePut(t, w, fileEntry("req-3", "third record"))
	wantFileData(t, fileDrain(t, fileIter(t, ro, ShardName(0), Start{}), 10), "first record", "second record", "third record")
}

// BenchmarkFilePut appends batches of 100 usage-event-sized records, one
// fsync per batch.
func BenchmarkFilePut(b *testing.B) {
	s, err := OpenFile(b.TempDir(), FileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := bytes.Repeat([]byte("x"), 400)
	batch := make([]Entry, 100)
	for i := range batch {
		batch[i] = Entry{PartitionKey: fmt.Sprintf("req-%d", i), Data: data}
	}
	b.SetBytes(int64(len(batch) * len(data)))
	for b.Loop() {
		if err := s.Put(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileRead reads 10,000 records of 400 bytes from the start.
func BenchmarkFileRead(b *testing.B) {
	s, err := OpenFile(b.TempDir(), FileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := make([]Entry, 1000)
	for i := range batch {
		batch[i] = Entry{PartitionKey: fmt.Sprintf("req-%d", i), Data: bytes.Repeat([]byte("x"), 400)}
	}
	for range 10 {
		if err := s.Put(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(10000 * 400)
	for b.Loop() {
		it, err := s.Open(context.Background(), ShardName(0), Start{})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			recs, err := it.Next(context.Background(), 500)
			if err != nil {
				b.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			n += len(recs)
		}
		it.Close()
		if n != 10000 {
			b.Fatalf("read %d", n)
		}
	}
}
