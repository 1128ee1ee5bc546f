package schemas

// The JSON files the pipeline writes beside its tables: manifest.json
// (chargeback/dt=D/manifest.json: what a compaction read, what it wrote and how
// the revision differs from the one before) and the reconciliation summary.json.

// ManifestObject describes one object a compaction read or wrote.
type ManifestObject struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Rows   int    `json:"rows"`
}

// ManifestTotals are the day's sums as written to the manifest.
type ManifestTotals struct {
	Invocations  int64  `json:"invocations"`
	InputTokens  int64  `json:"input_tokens"`
	OutputTokens int64  `json:"output_tokens"`
	CacheRead    int64  `json:"cache_read_input_tokens"`
	CacheWrite   int64  `json:"cache_write_input_tokens"`
	Images       int64  `json:"image_count"`
	Denied       int64  `json:"denied"`
	Throttled    int64  `json:"throttled"`
	Errors       int64  `json:"errors"`
	InputCost    string `json:"input_cost"`
	OutputCost   string `json:"output_cost"`
	TotalCost    string `json:"total_cost"`
}

// Manifest explains a compaction: what was read and what came out.
type Manifest struct {
	Day               string           `json:"day"`
	Revision          int              `json:"revision"`
	Engine            string           `json:"engine"`
	Inputs            []ManifestObject `json:"inputs"`
	RowsRead          int              `json:"rows_read"`
	DuplicatesDropped int              `json:"duplicates_dropped"`
	OtherDayRows      int              `json:"other_day_rows"`
	RequestIDs        int              `json:"request_ids"`
	QuarantineObjects int              `json:"quarantine_objects"`
	QuarantineRecords int              `json:"quarantine_records"`
	PriceFile         string           `json:"price_file"`
	PriceSHA256       string           `json:"price_sha256"`
	Scale             int              `json:"scale"` // CSV cost places; -1: exact
	Outputs           []ManifestObject `json:"outputs"`
	Totals            ManifestTotals   `json:"totals"`
	// Previous says how this revision differs from the one it replaced.
	Previous *ManifestChange `json:"previous,omitempty"`
	// Unpriced lists usage left out of the chargeback because no price was in
	// force for it (never billed at a silent zero).
	Unpriced []ManifestUnpriced `json:"unpriced,omitempty"`
}

// ManifestUnpriced is usage of one team, cost center, model and tier that
// could not be priced.
type ManifestUnpriced struct {
	TeamID       string `json:"team_id"`
	CostCenter   string `json:"cost_center"`
	ModelID      string `json:"model_id"`
	PricingTier  string `json:"pricing_tier"`
	Calls        int64  `json:"calls"`
	InputTokens  int64  `json:"input_tokens"`
	OutputTokens int64  `json:"output_tokens"`
	Reason       string `json:"reason"`
}

// ManifestChange says how a revision differs from the one before it.
type ManifestChange struct {
	Revision        int                   `json:"revision"`
	InputsAdded     []string              `json:"inputs_added,omitempty"`
	InputsRemoved   []string              `json:"inputs_removed,omitempty"`
	PricesChanged   bool                  `json:"prices_changed,omitempty"`
	ScaleChanged    bool                  `json:"scale_changed,omitempty"`
	RowsReadDiff    int                   `json:"rows_read_diff"`
	RequestIDsDiff  int                   `json:"request_ids_diff"`
	DuplicatesDiff  int                   `json:"duplicates_diff"`
	InvocationsDiff int64                 `json:"invocations_diff"`
	TotalCostBefore string                `json:"total_cost_before"`
	TotalCostDiff   string                `json:"total_cost_diff"`
	Groups          []ManifestGroupChange `json:"groups,omitempty"`
}

// ManifestGroupChange is where money moved: one chargeback row whose numbers differ
// from the previous revision's (costs as the CSVs carry them).
type ManifestGroupChange struct {
	TeamID            string `json:"team_id"`
	CostCenter        string `json:"cost_center"`
	ModelID           string `json:"model_id"`
	InvocationsBefore int64  `json:"invocations_before"`
	InvocationsAfter  int64  `json:"invocations_after"`
	TotalCostBefore   string `json:"total_cost_before"`
	TotalCostAfter    string `json:"total_cost_after"`
	TotalCostDiff     string `json:"total_cost_diff"`
}

// ReconciliationSummary is summary.json (reconciliation/dt=D/summary.json): the count of each status and what
// the report was made from.
type ReconciliationSummary struct {
	Day                  string         `json:"day"`
	Matched              int            `json:"matched"`
	Unmetered            int            `json:"unmetered"`
	Unconfirmed          int            `json:"unconfirmed"`
	Mismatched           int            `json:"mismatched"`
	Rows                 int            `json:"rows"`
	UnmeteredFailed      int            `json:"unmetered_failed_calls"`
	Pending              int            `json:"pending"`
	AsOf                 string         `json:"as_of"`
	DeliveryAllowanceSec int64          `json:"delivery_allowance_seconds"`
	UsageEvents          int            `json:"usage_events"`
	CloudTrailEvents     int            `json:"cloudtrail_events"`
	Skipped              map[string]int `json:"skipped"`
}
