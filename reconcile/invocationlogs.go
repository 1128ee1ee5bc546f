package reconcile

// Reading Bedrock model invocation logs: the gzipped JSON-lines objects
// Bedrock delivers to S3 under
// AWSLogs/ACCOUNT/BedrockModelInvocationLogs/REGION/YYYY/MM/DD/HH/. Every line
// that cannot be read is reported with its object key and line number, never
// skipped in silence.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/meter-dev/meter/aggregator"
	"github.com/meter-dev/meter/internal/store"
	"github.com/meter-dev/meter/schemas"
)

// MaxInvocationLogLine bounds one log line (bodies included when text delivery
// is on); a longer line is reported, not read.
const MaxInvocationLogLine = 32 << 20

// maxTokenCount bounds a logged token count: more is not a real request.
const maxTokenCount = 1 << 40

// ErrNoInvocationLogs reports a location with no log objects for the window.
var ErrNoInvocationLogs = errors.New("no invocation log objects")

// InvocationLogFiles reads invocation log objects from a store (s3:// or file://).
type InvocationLogFiles struct {
	Store store.Store
	// Prefix is the folder within Store: one that holds AWSLogs/, or any folder below it.
	Prefix string
}

// InvocationLogResult is what a read found.
type InvocationLogResult struct {
	Records []aggregator.LogRecord
	Issues  []aggregator.LogIssue
	Objects int
}

// logKey matches the hour folder and file name at the end of a log object's key.
var logKey = regexp.MustCompile(`(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+\.json(?:\.gz)?$`)

// Read reads the records whose timestamp falls in [from, to), from the hour
// folders of that window and the hour after it (delivery lags the call).
func (f *InvocationLogFiles) Read(ctx context.Context, from, to time.Time) (InvocationLogResult, error) {
	prefix := f.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	hours := map[string]bool{}
	for h := from.UTC().Truncate(time.Hour); h.Before(to.Add(time.Hour)); h = h.Add(time.Hour) {
		hours[h.Format("2006/01/02/15")] = true
	}
	objs, err := f.Store.List(ctx, prefix)
	if err != nil {
		return InvocationLogResult{}, fmt.Errorf("listing invocation logs under %q: %w", prefix, err)
	}
	var res InvocationLogResult
	for _, o := range objs {
		m := logKey.FindStringSubmatch(strings.TrimPrefix(o.Key, prefix))
		if m == nil || !hours[m[1]+"/"+m[2]+"/"+m[3]+"/"+m[4]] {
			continue
		}
		if err := f.readObject(ctx, o.Key, from, to, &res); err != nil {
			return InvocationLogResult{}, err
		}
		res.Objects++
	}
	if res.Objects == 0 {
		return InvocationLogResult{}, fmt.Errorf("%w for %s to %s under %q", ErrNoInvocationLogs,
			from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), prefix)
	}
	return res, nil
}

func (f *InvocationLogFiles) readObject(ctx context.Context, key string, from, to time.Time, res *InvocationLogResult) error {
	rc, err := f.Store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("reading invocation log %s: %w", key, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if strings.HasSuffix(key, ".gz") {
		zr, err := gzip.NewReader(rc)
		if err != nil {
			res.Issues = append(res.Issues, aggregator.LogIssue{Key: key, Line: 1, Reason: "not a gzip object: " + err.Error()})
			return nil
		}
		defer zr.Close()
		r = zr
	}
	ParseInvocationLog(key, r, from, to, res)
	return nil
}

// ParseInvocationLog reads JSON-lines records from r, appending the records of
// [from, to) and an issue for every line that cannot be used.
func ParseInvocationLog(key string, r io.Reader, from, to time.Time, res *InvocationLogResult) {
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		text, tooLong, err := readLine(br, MaxInvocationLogLine)
		if tooLong {
			res.Issues = append(res.Issues, aggregator.LogIssue{Key: key, Line: line, Reason: fmt.Sprintf("line longer than %d bytes", MaxInvocationLogLine)})
		} else if len(bytes.TrimSpace(text)) > 0 {
			if err != nil && err != io.EOF {
				// The object was cut short: what came before is kept, the rest reported.
				res.Issues = append(res.Issues, aggregator.LogIssue{Key: key, Line: line, Reason: "object ends early: " + err.Error()})
				return
			}
			rec, reason := parseLogRecord(text)
			switch {
			case reason != "":
				res.Issues = append(res.Issues, aggregator.LogIssue{Key: key, Line: line, Reason: reason})
			case !rec.Time.Before(from) && rec.Time.Before(to):
				rec.Key, rec.Line = key, line
				res.Records = append(res.Records, rec)
			}
		}
		if err != nil {
			if err != io.EOF {
				res.Issues = append(res.Issues, aggregator.LogIssue{Key: key, Line: line, Reason: "object ends early: " + err.Error()})
			}
			return
		}
	}
}

// readLine returns the next line without its newline; tooLong when it exceeds
// limit (the line is consumed). err is io.EOF after the last line.
func readLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > limit {
			tooLong = true
			buf = buf[:0]
		} else if !tooLong {
			buf = append(buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), tooLong, err
	}
}

// parseLogRecord decodes one record; reason says why it cannot be used.
func parseLogRecord(text []byte) (aggregator.LogRecord, string) {
	var v schemas.InvocationLog
	if err := json.Unmarshal(text, &v); err != nil {
		return aggregator.LogRecord{}, "not a JSON invocation log record: " + err.Error()
	}
	if v.SchemaType != "" && v.SchemaType != schemas.InvocationLogSchemaType {
		return aggregator.LogRecord{}, fmt.Sprintf("schemaType %q is not %s", v.SchemaType, schemas.InvocationLogSchemaType)
	}
	if v.RequestID == "" || len(v.RequestID) > 256 {
		return aggregator.LogRecord{}, "record without a requestId (or one longer than 256 characters)"
	}
	if err := schemas.CheckModelID(v.ModelID); v.ModelID != "" && err != nil {
		return aggregator.LogRecord{}, "modelId " + err.Error()
	}
	at, err := time.Parse(time.RFC3339Nano, v.Timestamp)
	if err != nil {
		return aggregator.LogRecord{}, fmt.Sprintf("timestamp %q is not RFC 3339", v.Timestamp)
	}
	rec := aggregator.LogRecord{RequestID: v.RequestID, ModelID: v.ModelID, Operation: v.Operation, ErrorCode: v.ErrorCode,
		Time: at.UTC(), Metadata: v.RequestMetadata}
	for _, c := range []struct {
		name string
		v    *int64
		dst  *int64
	}{
		{"input.inputTokenCount", v.Input.InputTokenCount, &rec.Input},
		{"input.cacheReadInputTokenCount", v.Input.CacheReadInputTokenCount, &rec.CacheRead},
		{"input.cacheWriteInputTokenCount", v.Input.CacheWriteInputTokenCount, &rec.CacheWrite},
		{"output.outputTokenCount", v.Output.OutputTokenCount, &rec.Output},
	} {
		if c.v == nil {
			continue
		}
		if *c.v < 0 || *c.v > maxTokenCount {
			return aggregator.LogRecord{}, fmt.Sprintf("%s %d out of range", c.name, *c.v)
		}
		*c.dst = *c.v
	}
	return rec, ""
}
