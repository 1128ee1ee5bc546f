package stream

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

func TestFormatFileSeqPadsTo20Digits(t *testing.T) {
	for _, off := range []int64{0, 1, 8, 42, 999, 1000, 123456789012, math.MaxInt64, -1, -42} {
		if got, want := FormatFileSeq(off), fmt.Sprintf("%020d", off); got != want {
			t.Errorf("FormatFileSeq(%d) = %q, want %q", off, got, want)
		}
	}
}

// Records read in one batch share arenas: each one's data must stay its
// own, even when a reader appends to it.
func TestFileRecordsDataIsTheirOwn(t *testing.T) {
	ctx := context.Background()
	fs, err := OpenFile(filepath.Join(t.TempDir(), "s"), FileOptions{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	var entries []Entry
	for i := range 8000 { // keys and sequence numbers span several string blocks
		entries = append(entries, Entry{PartitionKey: fmt.Sprint("k", i), Data: bytes.Repeat([]byte{byte('a' + i%26)}, 1+i%700)})
	}
	// One large record, past the arena's share, is copied on its own.
	entries = append(entries, Entry{PartitionKey: "big", Data: bytes.Repeat([]byte{'z'}, arenaBytes/4)})
	if err := fs.Put(ctx, entries); err != nil {
		t.Fatal(err)
	}
	it, err := fs.Open(ctx, ShardName(0), Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	recs, err := it.Next(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(entries) {
		t.Fatalf("read %d records, want %d", len(recs), len(entries))
	}
	for i := range recs {
		recs[i].Data = append(recs[i].Data, '!')
	}
	for i, r := range recs {
		if off, err := ParseFileSeq(r.SequenceNumber); err != nil || len(r.SequenceNumber) != 20 || (i > 0 && CompareSeq(r.SequenceNumber, recs[i-1].SequenceNumber) <= 0) || off <= 0 {
			t.Fatalf("record %d: sequence number %q after %q", i, r.SequenceNumber, recs[max(0, i-1)].SequenceNumber)
		}
		want := append(bytes.Clone(entries[i].Data), '!')
		if !bytes.Equal(r.Data, want) || r.PartitionKey != entries[i].PartitionKey {
			t.Fatalf("record %d: key %q, %d bytes, want %q, %d bytes", i, r.PartitionKey, len(r.Data), entries[i].PartitionKey, len(want))
		}
	}
}
