package schemas

// Formats of meter's independent witnesses: the request metadata the invoker
// attaches to every Bedrock call, the Bedrock model invocation log record that
// carries it back, and the CSV files the reconciliation writes from the
// invocation logs and the bill (a CUR 2.0 data export).

// Request metadata keys the invoker attaches to every Bedrock call
// (X-Amzn-Bedrock-Request-Metadata on InvokeModel*, requestMetadata on
// Converse*), so Bedrock's invocation logs can be joined to usage events.
const (
	MetadataTeamID     = "team_id"
	MetadataCostCenter = "cost_center"
	MetadataEventID    = "event_id"
)

// HeaderRequestMetadata is the InvokeModel request header carrying request
// metadata: a JSON object of string keys and values.
const HeaderRequestMetadata = "X-Amzn-Bedrock-Request-Metadata"

// Request metadata limits, as Bedrock documents them for requestMetadata: at
// most 16 pairs, keys 1 to 256 characters, values at most 256.
const (
	MaxRequestMetadataPairs = 16
	MaxRequestMetadataKey   = 256
	MaxRequestMetadataValue = 256
)

// InvocationLog is one Bedrock model invocation log record, in the field names
// of AWS's published examples (schemaType "ModelInvocationLog"). Bodies
// (inputBodyJson, outputBodyJson) are present only when text delivery is on;
// meter neither writes nor reads them.
type InvocationLog struct {
	SchemaType      string            `json:"schemaType"`
	SchemaVersion   string            `json:"schemaVersion"`
	Timestamp       string            `json:"timestamp"`
	AccountID       string            `json:"accountId"`
	Identity        InvocationLogWho  `json:"identity"`
	Region          string            `json:"region"`
	RequestID       string            `json:"requestId"`
	Operation       string            `json:"operation"`
	ModelID         string            `json:"modelId"`
	InferenceRegion string            `json:"inferenceRegion,omitempty"`
	ErrorCode       string            `json:"errorCode,omitempty"`
	Input           InvocationLogIn   `json:"input"`
	Output          InvocationLogOut  `json:"output"`
	RequestMetadata map[string]string `json:"requestMetadata,omitempty"`
}

// InvocationLogWho is the caller of a logged invocation.
type InvocationLogWho struct {
	ARN string `json:"arn"`
}

// InvocationLogIn is the input side of a logged invocation.
type InvocationLogIn struct {
	InputContentType          string `json:"inputContentType,omitempty"`
	InputTokenCount           *int64 `json:"inputTokenCount,omitempty"`
	CacheReadInputTokenCount  *int64 `json:"cacheReadInputTokenCount,omitempty"`
	CacheWriteInputTokenCount *int64 `json:"cacheWriteInputTokenCount,omitempty"`
}

// InvocationLogOut is the output side of a logged invocation.
type InvocationLogOut struct {
	OutputContentType string `json:"outputContentType,omitempty"`
	OutputTokenCount  *int64 `json:"outputTokenCount,omitempty"`
}

// InvocationLogSchemaType is the schemaType of a model invocation log record.
const InvocationLogSchemaType = "ModelInvocationLog"

// TokensColumns are the columns of reconciliation/dt=D/tokens-D.csv: one row
// per request id, meter's token counts beside the invocation log's.
var TokensColumns = []string{
	"request_id", "status", "team_id", "cost_center", "model_id", "event_id", "event_time", "log_time",
	"metered_input_tokens", "logged_input_tokens", "metered_output_tokens", "logged_output_tokens",
	"metered_cache_read_input_tokens", "logged_cache_read_input_tokens",
	"metered_cache_write_input_tokens", "logged_cache_write_input_tokens",
	"log_key", "log_line", "detail",
}

// TokensStatuses are the statuses of a tokens row: matched, mismatched
// (a token count, the model or the request metadata differ), unmetered (logged,
// no usage event), unconfirmed (metered, no log record) and unreadable (a log
// line that could not be read: its key and line say where).
var TokensStatuses = []string{"matched", "mismatched", "unmetered", "unconfirmed", "unreadable"}

// BillColumns are the columns of reconciliation/dt=D/bill-D.csv: one row per
// billed model, token type, service tier and cross-region routing.
var BillColumns = []string{
	"day", "model_id", "token_type", "pricing_tier", "cross_region", "status",
	"billed_tokens", "metered_tokens", "token_difference",
	"billed_cost", "metered_cost", "cost_difference", "usage_types", "detail",
}

// BillStatuses are the statuses of a bill row.
var BillStatuses = []string{"matched", "differs", "tokens_differ", "billed_only", "metered_only"}

// AllocatedColumns are the columns of chargeback/dt=D/allocated-D.csv: the
// chargeback's keys with the list-price cost and the share of the actual bill.
var AllocatedColumns = []string{
	"day", "team_id", "cost_center", "model_id", "billed_model_id", "list_cost", "allocated_cost",
}

// TokensCSVKey is the key of a day's invocation-log reconciliation.
func TokensCSVKey(day string) string {
	return Partition(ReconciliationPrefix, day) + "tokens-" + day + ".csv"
}

// BillCSVKey is the key of a day's bill reconciliation.
func BillCSVKey(day string) string {
	return Partition(ReconciliationPrefix, day) + "bill-" + day + ".csv"
}

// AllocatedCSVKey is the key of a day's allocated chargeback (actual cost).
func AllocatedCSVKey(day string) string {
	return Partition(ChargebackPrefix, day) + "allocated-" + day + ".csv"
}

// AllocatedManifestKey is the key of the allocated chargeback's manifest.
func AllocatedManifestKey(day string) string {
	return Partition(ChargebackPrefix, day) + "allocated-manifest.json"
}

// AllocatedManifest says what an allocated chargeback was made from: the bill's
// objects and, per billed model, the lines its cost came from.
type AllocatedManifest struct {
	Day        string             `json:"day"`
	Rule       string             `json:"rule"`
	BillInputs []ManifestObject   `json:"bill_inputs"`
	Models     []AllocatedModel   `json:"models"`
	Unassigned []AllocatedModel   `json:"unallocated,omitempty"`
	Totals     AllocatedTotalsDoc `json:"totals"`
}

// AllocatedModel is one billed model's cost and the bill lines it came from.
type AllocatedModel struct {
	ModelID     string          `json:"model_id"`
	BilledCost  string          `json:"billed_cost"`
	Allocated   string          `json:"allocated_cost"`
	ListCost    string          `json:"list_cost"`
	Rows        int             `json:"rows"`
	Lines       []AllocatedLine `json:"bill_lines"`
	Explanation string          `json:"detail,omitempty"`
}

// AllocatedLine sums the bill's lines of one usage type and line item type.
type AllocatedLine struct {
	UsageType    string `json:"line_item_usage_type"`
	LineItemType string `json:"line_item_line_item_type"`
	Lines        int    `json:"lines"`
	UsageAmount  string `json:"line_item_usage_amount"`
	Cost         string `json:"cost"`
}

// AllocatedTotalsDoc are the day's sums.
type AllocatedTotalsDoc struct {
	BilledCost string `json:"billed_cost"`
	Allocated  string `json:"allocated_cost"`
	ListCost   string `json:"list_cost"`
}
