package bedrocklocal

// Request metadata and model invocation logs. Bedrock takes per-request
// metadata (the X-Amzn-Bedrock-Request-Metadata header on InvokeModel and
// InvokeModelWithResponseStream, the requestMetadata field on Converse and
// ConverseStream) and records it in its model invocation logs, which it
// delivers to S3 as gzipped JSON lines under
// AWSLogs/<account>/BedrockModelInvocationLogs/<region>/YYYY/MM/DD/HH/.
// The server checks the metadata as Bedrock does and writes the same records.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// HeaderOmitInvocationLog ("true") answers the call but writes no invocation
// log record, as if logging had lost it.
const HeaderOmitInvocationLog = "X-Meter-Omit-Invocation-Log"

// metadataText is what Bedrock allows in request metadata keys and values.
var metadataText = regexp.MustCompile(`^[a-zA-Z0-9\s:_@$#=/+,.-]*$`)

// requestMetadata reads and checks a call's request metadata: from the header
// for InvokeModel*, from the body's requestMetadata for Converse*.
func requestMetadata(r *http.Request, c *call, body []byte) (map[string]string, error) {
	var md map[string]string
	if c.op.converse {
		var req struct {
			RequestMetadata map[string]string `json:"requestMetadata"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, validation("Malformed input request: requestMetadata must be an object of string values")
		}
		md = req.RequestMetadata
	} else if v := r.Header.Get(schemas.HeaderRequestMetadata); v != "" {
		if err := json.Unmarshal([]byte(v), &md); err != nil {
			return nil, validation("%s must be a JSON object of string keys and values", schemas.HeaderRequestMetadata)
		}
	}
	if len(md) > schemas.MaxRequestMetadataPairs {
		return nil, validation("requestMetadata has %d entries; at most %d are allowed", len(md), schemas.MaxRequestMetadataPairs)
	}
	for k, v := range md {
		if len(k) < 1 || len(k) > schemas.MaxRequestMetadataKey || len(v) > schemas.MaxRequestMetadataValue {
			return nil, validation("requestMetadata keys must be 1 to %d characters and values at most %d", schemas.MaxRequestMetadataKey, schemas.MaxRequestMetadataValue)
		}
		if !metadataText.MatchString(k) || !metadataText.MatchString(v) {
			return nil, validation("requestMetadata key %q or its value has characters outside [a-zA-Z0-9 :_@$#=/+,.-]", k)
		}
	}
	return md, nil
}

// invocationLog builds the model invocation log record of a finished call.
func (s *Server) invocationLog(r *http.Request, c *call, failure *apiError) []byte {
	ident, _ := s.identity(accessKeyID(r))
	arn := ident.ARN
	if arn == "" {
		arn = "arn:aws:iam::" + s.cfg.AccountID + ":root"
	}
	rec := schemas.InvocationLog{
		SchemaType: schemas.InvocationLogSchemaType, SchemaVersion: "1.0",
		Timestamp: c.at.UTC().Format("2006-01-02T15:04:05Z"), AccountID: s.cfg.AccountID,
		Identity: schemas.InvocationLogWho{ARN: arn}, Region: s.cfg.Region, RequestID: c.requestID,
		Operation: c.op.name, ModelID: c.modelID, InferenceRegion: c.inferenceRegion, RequestMetadata: c.metadata,
		Input:  schemas.InvocationLogIn{InputContentType: "application/json"},
		Output: schemas.InvocationLogOut{OutputContentType: "application/json"},
	}
	if failure != nil {
		rec.ErrorCode = failure.kind
	}
	if c.served {
		in, out := int64(c.usage.input), int64(c.usage.output)
		rec.Input.InputTokenCount, rec.Output.OutputTokenCount = &in, &out
		if c.usage.caching {
			cr, cw := int64(c.usage.cacheRead), int64(c.usage.cacheWrite)
			rec.Input.CacheReadInputTokenCount, rec.Input.CacheWriteInputTokenCount = &cr, &cw
		}
	}
	raw, _ := json.Marshal(rec)
	return raw
}

// logDelivery buffers invocation log records and delivers them as gzipped
// JSON lines, foldered by delivery hour, whole or not at all.
type logDelivery struct {
	dir, account, region string
	now                  func() time.Time
	delivery
}

func newLogDelivery(cfg Config) *logDelivery {
	d := &logDelivery{dir: cfg.InvocationLogDir, account: cfg.AccountID, region: cfg.Region, now: cfg.Now}
	d.delivery = delivery{batch: cfg.TrailBatch, write: d.write}
	return d
}

func (d *logDelivery) add(raw []byte) {
	if d.dir != "" {
		d.delivery.add(raw)
	}
}

func (d *logDelivery) write(records [][]byte) error {
	at := d.now().UTC()
	dir := filepath.Join(d.dir, "AWSLogs", d.account, "BedrockModelInvocationLogs", d.region,
		at.Format("2006"), at.Format("01"), at.Format("02"), at.Format("15"))
	name := fmt.Sprintf("%s_%s.json.gz", at.Format("20060102T150405Z"), randomAlnum(16))
	var body bytes.Buffer
	for _, r := range records {
		body.Write(r)
		body.WriteByte('\n')
	}
	if err := writeGzipFile(dir, name, body.Bytes()); err != nil {
		return fmt.Errorf("delivering invocation log object %s: %w", name, err)
	}
	return nil
}
