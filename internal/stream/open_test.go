package stream

import (
	"context"
	"strings"
	"testing"
)

func TestOpenURIFile(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenURI(t.Context(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(t.Context(), []Entry{fileEntry("req-1", `{"request_id":"req-1"}`)}); err != nil {
		t.Fatal(err)
	}
	shards, err := s.Shards(t.Context())
	if err != nil || len(shards) != 1 {
		t.Fatalf("Shards = %v, %v", shards, err)
	}
	it, err := s.Open(t.Context(), shards[0].ID, Start{Kind: TrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	wantFileData(t, fileDrain(t, it, 10), `{"request_id":"req-1"}`)
}

func TestOpenURIRejectsUnknownLocations(t *testing.T) {
	for _, uri := range []string{"s3://bucket/stream", "/var/lib/stream", "file://", ""} {
		s, err := OpenURI(context.Background(), uri)
		if err == nil {
			s.Close()
			t.Errorf("OpenURI(%q): no error", uri)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `"`+uri+`"`) {
			t.Errorf("OpenURI(%q) error is not one line naming the location: %q", uri, err)
		}
	}
}
