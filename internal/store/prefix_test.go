package store

import "testing"

// A prefixed view keeps every promise of a store, and stays inside its prefix.
func TestWithPrefixContract(t *testing.T) {
	base, err := OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put(t, base, "events/dt=2026-11-25/live.parquet", "live")
	put(t, base, "_replay/2026-11-25/r1x/events/dt=2026-11-25/neighbour.parquet", "n")

	s := WithPrefix(base, "_replay/2026-11-25/r1")
	testStoreContract(t, s)

	if got := get(t, base, "events/dt=2026-11-25/live.parquet"); got != "live" {
		t.Errorf("live object changed: %q", got)
	}
	if got := keys(t, base, "events/"); got != "events/dt=2026-11-25/live.parquet:4" {
		t.Errorf("the view wrote outside its prefix: %s", got)
	}
	if got := keys(t, base, "_replay/2026-11-25/r1/events/dt=2026-11-26/"); got != "_replay/2026-11-25/r1/events/dt=2026-11-26/part-a.parquet:3" {
		t.Errorf("keys under the prefix: %s", got)
	}
	// "r1" is not a prefix of "r1x": the neighbour's objects are not listed.
	if got := keys(t, s, "events/dt=2026-11-25/"); got != "events/dt=2026-11-25/part-b.parquet:2" {
		t.Errorf("List in the view: %s", got)
	}
	// A view of a view nests.
	inner := WithPrefix(s, "inner/")
	put(t, inner, "k", "v")
	if got := get(t, base, "_replay/2026-11-25/r1/inner/k"); got != "v" {
		t.Errorf("nested view: %q", got)
	}
	if got := keys(t, inner, ""); got != "k:1" {
		t.Errorf("nested List: %s", got)
	}
}
