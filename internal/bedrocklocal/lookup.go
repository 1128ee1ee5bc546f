package bedrocklocal

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// lookupHandler answers CloudTrail's LookupEvents (JSON 1.1 protocol) from
// the records the server has written: newest first, at most 50 a page.
type lookupHandler struct {
	trail *trail
	now   func() time.Time
	limit *limiter
}

type lookupRequest struct {
	LookupAttributes []struct {
		AttributeKey   string
		AttributeValue string
	}
	StartTime     *float64
	EndTime       *float64
	MaxResults    *int
	NextToken     *string
	EventCategory string
}

type lookupEvent struct {
	EventId         string
	EventName       string
	ReadOnly        string
	AccessKeyId     string `json:",omitempty"`
	EventTime       float64
	EventSource     string
	Username        string `json:",omitempty"`
	Resources       []lookupResource
	CloudTrailEvent string
}

type lookupResource struct {
	ResourceType string
	ResourceName string
}

func awsJSONError(w http.ResponseWriter, kind, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", kind)
	w.Header().Set("X-Amzn-RequestId", newUUID())
	w.WriteHeader(http.StatusBadRequest)
	body, _ := json.Marshal(map[string]string{"__type": kind, "message": message})
	w.Write(body)
}

func (h *lookupHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || !strings.HasSuffix(target, "CloudTrail_20131101.LookupEvents") {
		awsJSONError(w, "UnknownOperationException", "Unknown operation "+target)
		return
	}
	if !h.limit.allow() {
		awsJSONError(w, "ThrottlingException", "Rate exceeded")
		return
	}
	var req lookupRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		awsJSONError(w, "SerializationException", err.Error())
		return
	}
	page, next, kind, msg := h.lookup(req)
	if kind != "" {
		awsJSONError(w, kind, msg)
		return
	}
	out := struct {
		Events    []lookupEvent
		NextToken string `json:",omitempty"`
	}{Events: page, NextToken: next}
	body, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", newUUID())
	w.Write(body)
}

// lookup selects one page; kind and msg name a client error.
func (h *lookupHandler) lookup(req lookupRequest) (page []lookupEvent, next, kind, msg string) {
	if len(req.LookupAttributes) > 1 {
		return nil, "", "InvalidLookupAttributesException", "You can specify only one lookup attribute."
	}
	max := 50
	if req.MaxResults != nil {
		max = *req.MaxResults
		if max < 1 || max > 50 {
			return nil, "", "InvalidMaxResultsException", "MaxResults must be between 1 and 50."
		}
	}
	end := h.now()
	start := end.Add(-90 * 24 * time.Hour)
	if req.StartTime != nil {
		start = epoch(*req.StartTime)
	}
	if req.EndTime != nil {
		end = epoch(*req.EndTime)
	}
	if start.After(end) {
		return nil, "", "InvalidTimeRangeException", "StartTime must be before EndTime."
	}
	if req.EventCategory != "" && req.EventCategory != "insight" {
		return nil, "", "InvalidEventCategoryException", "EventCategory must be insight."
	}
	if req.EventCategory == "insight" {
		return nil, "", "", ""
	}
	before := int64(math.MaxInt64)
	if req.NextToken != nil {
		seq, ok := parseToken(*req.NextToken)
		if !ok {
			return nil, "", "InvalidNextTokenException", "Invalid NextToken."
		}
		before = seq
	}
	var match func(e lookupEntry) bool
	if len(req.LookupAttributes) == 1 {
		a := req.LookupAttributes[0]
		get, ok := lookupAttributes[a.AttributeKey]
		if !ok {
			return nil, "", "InvalidLookupAttributesException", "Unknown lookup attribute " + a.AttributeKey + "."
		}
		match = func(e lookupEntry) bool { return get(e) == a.AttributeValue }
	}

	entries := h.trail.snapshot()
	var lastSeq int64
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.seq >= before || e.time.Before(start) || e.time.After(end) || (match != nil && !match(e)) {
			continue
		}
		if len(page) == max {
			return page, token(lastSeq), "", ""
		}
		page = append(page, lookupEvent{
			EventId:         e.eventID,
			EventName:       e.eventName,
			ReadOnly:        "true",
			AccessKeyId:     e.accessKeyID,
			EventTime:       float64(e.time.Unix()),
			EventSource:     eventSource,
			Username:        e.username,
			Resources:       []lookupResource{{ResourceType: e.resType, ResourceName: e.resName}},
			CloudTrailEvent: string(e.raw),
		})
		lastSeq = e.seq
	}
	return page, "", "", ""
}

// lookupAttributes reads each LookupEvents attribute off an entry.
var lookupAttributes = map[string]func(lookupEntry) string{
	"EventId":      func(e lookupEntry) string { return e.eventID },
	"EventName":    func(e lookupEntry) string { return e.eventName },
	"ReadOnly":     func(lookupEntry) string { return "true" },
	"Username":     func(e lookupEntry) string { return e.username },
	"ResourceType": func(e lookupEntry) string { return e.resType },
	"ResourceName": func(e lookupEntry) string { return e.resName },
	"EventSource":  func(lookupEntry) string { return eventSource },
	"AccessKeyId":  func(e lookupEntry) string { return e.accessKeyID },
}

func epoch(sec float64) time.Time {
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9)).UTC()
}

// Page tokens carry the sequence number of the last event returned, so a
// page stays stable while new events arrive.
func token(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("seq:" + strconv.FormatInt(seq, 10)))
}

func parseToken(s string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(string(b), "seq:"), 10, 64)
	return n, err == nil && strings.HasPrefix(string(b), "seq:")
}

// limiter is a token bucket of rate per second and burst 1; a nil limiter
// allows everything.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(rate float64) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{rate: rate, tokens: 1, last: time.Now()}
}

func (l *limiter) allow() bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.tokens = math.Min(1, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
