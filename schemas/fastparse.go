package schemas

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// parseFast decodes the common shape of an event (a flat JSON object of
// strings and integers, no escapes, timestamps like 2026-11-25T10:00:00.123Z)
// without reflection. ok is false for anything else, and ParseEvent then takes
// the general path, which also produces the error messages; the fast path never
// decides that a record is bad.
func parseFast(data []byte, intern func([]byte) string) (e Event, ok bool) {
	return parseFastIDs(data, intern, plainString)
}

// parseFastIDs is parseFast with the ids' strings made by ids.
func parseFastIDs(data []byte, intern, ids func([]byte) string) (e Event, ok bool) {
	const (
		hSchema = 1 << iota
		hEventID
		hRequestID
		hTimestamp
		hTeamID
		hCostCenter
		hModelID
		hOperation
		hStatus
		hInput
		hOutput
		hLatency
		hAll = 1<<iota - 1
	)
	// The other fields' bits (fieldBit's numbering, which the above follow).
	const (
		hCacheRead = 1 << (12 + iota)
		hCacheWrite
		hImageCount
		hImageHeight
		hImageWidth
		hImageSteps
		hImageQuality
		hAPIKeyID
		hRegion
		hPricingTier
		hModelAlias
	)
	var have int
	var seen uint32 // fields met, to leave a repeated field to the general path
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return e, false
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return e, false
	}
	for {
		key, j, ok := scanString(data, i)
		if !ok {
			return e, false
		}
		// A field named twice, or in other letter case, is for the general
		// path to refuse: encoding/json would match it case-insensitively.
		bit := fieldBit(key)
		if bit != 0 {
			if seen&bit != 0 {
				return e, false
			}
			seen |= bit
		} else if foldsToField(key) {
			return e, false
		}
		i = skipWS(data, j)
		if i >= len(data) || data[i] != ':' {
			return e, false
		}
		i = skipWS(data, i+1)
		if i >= len(data) {
			return e, false
		}
		if data[i] == '"' {
			val, j, ok := scanString(data, i)
			if !ok {
				return e, false
			}
			i = j
			// The field is told by its bit: the name was matched once, above.
			switch bit {
			case hEventID:
				e.EventID, have = ids(val), have|hEventID
			case hRequestID:
				e.RequestID, have = ids(val), have|hRequestID
			case hTimestamp:
				ts, ok := parseTimestamp(val)
				if !ok {
					return e, false
				}
				e.Timestamp, have = ts, have|hTimestamp
			case hTeamID:
				e.TeamID, have = intern(val), have|hTeamID
			case hCostCenter:
				e.CostCenter, have = intern(val), have|hCostCenter
			case hModelID:
				e.ModelID, have = intern(val), have|hModelID
			case hOperation:
				e.Operation, have = intern(val), have|hOperation
			case hStatus:
				e.Status, have = intern(val), have|hStatus
			case hImageQuality:
				e.ImageQuality = intern(val)
			case hAPIKeyID:
				e.APIKeyID = intern(val)
			case hRegion:
				e.Region = intern(val)
			case hPricingTier:
				e.PricingTier = intern(val)
			case hModelAlias:
				e.ModelAlias = intern(val)
			case hSchema, hInput, hOutput, hLatency, hCacheRead, hCacheWrite, hImageCount, hImageHeight, hImageWidth, hImageSteps:
				return e, false // a string where a number belongs: let the general path explain
			}
		} else {
			n, j, ok := scanInt(data, i)
			if !ok {
				return e, false // floats, null, true/false, objects, arrays
			}
			i = j
			switch bit {
			case hSchema:
				e.SchemaVersion, have = int(n), have|hSchema
			case hInput:
				e.InputTokens, have = n, have|hInput
			case hOutput:
				e.OutputTokens, have = n, have|hOutput
			case hLatency:
				e.LatencyMS, have = n, have|hLatency
			case hCacheRead:
				e.CacheReadInputTokens = n
			case hCacheWrite:
				e.CacheWriteInputTokens = n
			case hImageCount:
				e.ImageCount = n
			case hImageHeight:
				e.ImageHeight = n
			case hImageWidth:
				e.ImageWidth = n
			case hImageSteps:
				e.ImageSteps = n
			case hEventID, hRequestID, hTimestamp, hTeamID, hCostCenter, hModelID, hOperation, hStatus,
				hImageQuality, hAPIKeyID, hRegion, hPricingTier:
				return e, false
			}
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return e, false
		}
		if data[i] == '}' {
			if skipWS(data, i+1) != len(data) {
				return e, false
			}
			break
		}
		if data[i] != ',' {
			return e, false
		}
		i = skipWS(data, i+1)
	}
	return e, have == hAll
}

func plainString(b []byte) string { return string(b) }

// Decoder decodes events and shares the strings that repeat across them
// (team, cost center, model, operation, status, key id, region, tier), so a
// long run of events allocates only their ids, and those a block of ids at a
// time (an event's ids share memory with its neighbours'). It is not safe for
// concurrent use.
type Decoder struct {
	strs map[string]string
	ids  strings.Builder // the current block of ids
}

// idBlock is the size of a Decoder's blocks of ids.
const idBlock = 32 << 10

// maxInterned bounds the shared strings; past it, new values are allocated as usual.
const maxInterned = 1 << 16

// Parse is ParseEvent with shared strings.
func (d *Decoder) Parse(data []byte) (Event, error) {
	if e, ok := parseFastIDs(data, d.intern, d.id); ok && e.Validate() == nil {
		return e, nil
	}
	return parseGeneral(data)
}

// id returns b as a string in the current block of ids: a strings.Builder
// never changes bytes it has written, so the block's string can be sliced.
func (d *Decoder) id(b []byte) string {
	if len(b) > idBlock/8 {
		return string(b)
	}
	if d.ids.Cap()-d.ids.Len() < len(b) {
		d.ids = strings.Builder{}
		d.ids.Grow(idBlock)
	}
	off := d.ids.Len()
	d.ids.Write(b)
	return d.ids.String()[off:]
}

func (d *Decoder) intern(b []byte) string {
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if d.strs == nil {
		d.strs = map[string]string{}
	}
	if len(d.strs) < maxInterned {
		d.strs[s] = s
	}
	return s
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the contents of the string starting at b[i] (a quote),
// refusing escapes and control characters, which the general path handles.
func scanString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

// scanInt reads a JSON integer that fits comfortably in an int64.
func scanInt(b []byte, i int) (int64, int, bool) {
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	var n int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i-start >= 18 {
			return 0, i, false
		}
		n = n*10 + int64(b[i]-'0')
		i++
	}
	if i == start || (b[start] == '0' && i-start > 1) {
		return 0, i, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, i, false
	}
	if neg {
		n = -n
	}
	return n, i, true
}

// parseTimestamp reads YYYY-MM-DDTHH:MM:SS[.fraction]Z, the form events carry.
func parseTimestamp(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[len(b)-1] != 'Z' || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if rest := b[19 : len(b)-1]; len(rest) > 0 {
		if rest[0] != '.' || len(rest) < 2 || len(rest) > 10 {
			return time.Time{}, false
		}
		frac, ok := num(rest[1:])
		if !ok {
			return time.Time{}, false
		}
		for k := len(rest) - 1; k < 9; k++ {
			frac *= 10
		}
		nsec = frac
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // 2026-02-30 normalises to March: not a real date
		return time.Time{}, false
	}
	return t, true
}

// fieldBit returns a field name's bit (0 for a name that is no field): a
// switch, which the compiler turns into a search on length and bytes, costs
// the hot path less than hashing every key.
func fieldBit(key []byte) uint32 {
	switch string(key) {
	case "schema_version":
		return 1 << 0
	case "event_id":
		return 1 << 1
	case "request_id":
		return 1 << 2
	case "timestamp":
		return 1 << 3
	case "team_id":
		return 1 << 4
	case "cost_center":
		return 1 << 5
	case "model_id":
		return 1 << 6
	case "operation":
		return 1 << 7
	case "status":
		return 1 << 8
	case "input_tokens":
		return 1 << 9
	case "output_tokens":
		return 1 << 10
	case "latency_ms":
		return 1 << 11
	case "cache_read_input_tokens":
		return 1 << 12
	case "cache_write_input_tokens":
		return 1 << 13
	case "image_count":
		return 1 << 14
	case "image_height":
		return 1 << 15
	case "image_width":
		return 1 << 16
	case "image_steps":
		return 1 << 17
	case "image_quality":
		return 1 << 18
	case "api_key_id":
		return 1 << 19
	case "region":
		return 1 << 20
	case "pricing_tier":
		return 1 << 21
	case "model_alias":
		return 1 << 22
	}
	return 0
}

// eventFields are the usage event's JSON field names.
var eventFields = []string{"schema_version", "event_id", "request_id", "timestamp", "team_id", "cost_center", "model_id",
	"operation", "status", "input_tokens", "output_tokens", "latency_ms", "cache_read_input_tokens", "cache_write_input_tokens",
	"image_count", "image_height", "image_width", "image_steps", "image_quality", "api_key_id", "region", "pricing_tier", "model_alias"}

// foldsToField reports whether key is a field name in other letter case.
func foldsToField(key []byte) bool {
	for _, name := range eventFields {
		if len(name) == len(key) && strings.EqualFold(name, string(key)) {
			return true
		}
	}
	return false
}

// checkKeys refuses a record whose top-level object names a field twice or in
// other letter case: encoding/json would take the last one, or match it
// case-insensitively, where a reader of the record sees another value.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil // not an object: the decoder says so
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := t.(string)
		if fieldBit([]byte(key)) != 0 {
			if seen[key] {
				return &FieldError{Field: key, Reason: "named twice"}
			}
			seen[key] = true
		} else if foldsToField([]byte(key)) {
			return &FieldError{Field: key, Reason: "field names are lower case (" + strings.ToLower(key) + ")"}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}
