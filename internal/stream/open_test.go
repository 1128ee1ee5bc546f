package stream

import (
	"context"
	"strings"
	"testing"
)

func TestOpenFileLocation(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := OpenSource(t.Context(), "file://"+dir); err == nil || !strings.Contains(err.Error(), "no stream there") {
		t.Fatalf("reading a stream nobody wrote: %v", err)
	}
	p, closeP, err := OpenProducer(t.Context(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeP()
	if err := p.Put(t.Context(), []Entry{fileEntry("req-1", `{"request_id":"req-1"}`)}); err != nil {
		t.Fatal(err)
	}
	s, closeS, err := OpenSource(t.Context(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeS()
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

func TestOpenRejectsUnknownLocations(t *testing.T) {
	for _, uri := range []string{"s3://bucket/stream", "/var/lib/stream", "file://", "kinesis://", ""} {
		for name, open := range map[string]func() error{
			"producer": func() error { _, _, err := OpenProducer(context.Background(), uri); return err },
			"source":   func() error { _, _, err := OpenSource(context.Background(), uri); return err },
		} {
			err := open()
			if err == nil {
				t.Errorf("%s %q: no error", name, uri)
				continue
			}
			if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `"`+uri+`"`) {
				t.Errorf("%s %q: error is not one line naming the location: %q", name, uri, err)
			}
		}
	}
}
