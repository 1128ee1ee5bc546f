package invoker

// Request metadata: every Bedrock call carries the team, its cost center and
// the usage event's event_id (minted before the call), so that Bedrock's own
// model invocation logs can be joined to meter's events (`meter reconcile
// --invocation-logs`). InvokeModel and InvokeModelWithResponseStream take it
// in the X-Amzn-Bedrock-Request-Metadata header (the SDK's RequestMetadata
// string), Converse and ConverseStream in the requestMetadata field.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/meter-dev/meter/schemas"
)

// callerText is what Bedrock allows in request metadata keys and values.
var callerText = regexp.MustCompile(`^[a-zA-Z0-9\s:_@$#=/+,.-]*$`)

// reservedMetadata are meter's keys: a caller's values for them are replaced.
var reservedMetadata = map[string]bool{schemas.MetadataTeamID: true, schemas.MetadataCostCenter: true, schemas.MetadataEventID: true}

// checkCallerMetadata applies Bedrock's rules to request metadata an app sent
// itself (the AWS SDK's RequestMetadata), leaving room for meter's three keys.
func checkCallerMetadata(md map[string]string) error {
	n := 0
	for k, v := range md {
		if len(k) < 1 || len(k) > schemas.MaxRequestMetadataKey || len(v) > schemas.MaxRequestMetadataValue ||
			!callerText.MatchString(k) || !callerText.MatchString(v) {
			return fmt.Errorf("requestMetadata: keys must be 1 to %d and values at most %d characters of [a-zA-Z0-9 :_@$#=/+,.-]",
				schemas.MaxRequestMetadataKey, schemas.MaxRequestMetadataValue)
		}
		if !reservedMetadata[k] {
			n++
		}
	}
	if n > schemas.MaxRequestMetadataPairs-len(reservedMetadata) {
		return fmt.Errorf("requestMetadata: at most %d entries besides meter's %s, %s and %s",
			schemas.MaxRequestMetadataPairs-len(reservedMetadata), schemas.MetadataTeamID, schemas.MetadataCostCenter, schemas.MetadataEventID)
	}
	return nil
}

// callerHeaderMetadata reads and checks the request metadata header an app
// sent on the runtime InvokeModel routes. It answers the request itself
// (400, ValidationException) when it returns false.
func (s *Server) callerHeaderMetadata(w http.ResponseWriter, r *http.Request, c *call) bool {
	v := r.Header.Get(schemas.HeaderRequestMetadata)
	if v == "" {
		return true
	}
	var md map[string]string
	err := json.Unmarshal([]byte(v), &md)
	if err == nil {
		err = checkCallerMetadata(md)
	} else {
		err = fmt.Errorf("%s must be a JSON object of string keys and values", schemas.HeaderRequestMetadata)
	}
	if err != nil {
		s.fail(w, r, c, &apiError{status: http.StatusBadRequest, code: "bad_request", eventStatus: schemas.StatusClientError, msg: err.Error()})
		return false
	}
	c.callerMetadata = md
	return true
}

// eventIDOf returns the call's event id, minting it on first use: before the
// Bedrock call, so the same id is in the request metadata and the event.
func (c *call) eventIDOf() string {
	if c.eventID == "" {
		c.eventID = newID()
	}
	return c.eventID
}

// metadataMap is the call's request metadata for Converse and ConverseStream:
// the caller's own pairs (checked by parseConverse), then meter's over them.
func (c *call) metadataMap(caller map[string]string) map[string]string {
	m := make(map[string]string, len(caller)+3)
	for k, v := range caller {
		m[k] = v
	}
	m[schemas.MetadataTeamID], m[schemas.MetadataEventID] = c.team.ID, c.eventIDOf()
	if c.team.CostCenter != "" {
		m[schemas.MetadataCostCenter] = c.team.CostCenter
	}
	return m
}

// metadataHeader is the call's request metadata as the JSON object the
// X-Amzn-Bedrock-Request-Metadata header carries. Team ids, cost centers and
// event ids are checked ids (letters, digits, . _ -), so they need no escaping.
// A caller's own pairs (runtime routes) go first, meter's replace theirs.
func (c *call) metadataHeader() *string {
	if len(c.callerMetadata) > 0 {
		b, _ := json.Marshal(c.metadataMap(c.callerMetadata))
		s := string(b)
		return &s
	}
	var b strings.Builder
	b.Grow(96)
	b.WriteString(`{"` + schemas.MetadataTeamID + `":"`)
	b.WriteString(c.team.ID)
	if c.team.CostCenter != "" {
		b.WriteString(`","` + schemas.MetadataCostCenter + `":"`)
		b.WriteString(c.team.CostCenter)
	}
	b.WriteString(`","` + schemas.MetadataEventID + `":"`)
	b.WriteString(c.eventIDOf())
	b.WriteString(`"}`)
	s := b.String()
	return &s
}
