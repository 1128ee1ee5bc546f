package schemas

import "fmt"

// The store's key layout: Hive-style partitions Athena reads (dt=YYYY-MM-DD),
// the same in S3 and in the embedded store. Object names are deterministic,
// so a retried write replaces rather than duplicates.
const (
	EventsPrefix         = "events/"
	WindowsPrefix        = "usage_windows/"
	DailyPrefix          = "daily/"
	ChargebackPrefix     = "chargeback/"
	ReconciliationPrefix = "reconciliation/"
	QuarantinePrefix     = "quarantine/"
	// CheckpointPrefix holds the collector's shard positions (not a table).
	CheckpointPrefix = "_checkpoints/"
)

// Partition returns the dt partition folder of a table for a day, e.g. "events/dt=2026-11-25/".
func Partition(tablePrefix, day string) string { return tablePrefix + "dt=" + day + "/" }

// ChargebackCSVName is the file name of a day's chargeback CSV.
func ChargebackCSVName(day string) string { return "chargeback-" + day + ".csv" }

// ChargebackCSVKey is the key of a day's chargeback CSV in force.
func ChargebackCSVKey(day string) string {
	return Partition(ChargebackPrefix, day) + ChargebackCSVName(day)
}

// ManifestKey is the key of the manifest of a day's chargeback in force.
func ManifestKey(day string) string { return Partition(ChargebackPrefix, day) + "manifest.json" }

// DailyKey is the key of a day's compacted daily Parquet.
func DailyKey(day string) string { return Partition(DailyPrefix, day) + "daily-" + day + ".parquet" }

// RevisionKey is the key of a revision's copy of name (the CSV or manifest.json).
func RevisionKey(day string, rev int, name string) string {
	return Partition(ChargebackPrefix, day) + fmt.Sprintf("revisions/r%d/", rev) + name
}

// ReconciliationKeys are the keys of a day's reconciliation report and summary.
func ReconciliationKeys(day string) (report, summary string) {
	dir := Partition(ReconciliationPrefix, day)
	return dir + "reconciliation-" + day + ".csv", dir + "summary.json"
}
