package schemas

import "fmt"

// Identifier rules (CONTRACT.md, Identifiers): ids are checked where they
// enter (the tenants file, the CLI, HTTP, events), so that every file name,
// CSV cell and Athena partition holds only safe text.
const (
	MaxIDLen      = 64   // team ids, cost centers, key ids
	MaxModelIDLen = 2048 // Bedrock's own limit for a model id or ARN
	MaxRefLen     = 256  // event and request ids (a request id is the stream's partition key)
)

// Bounds of an event's numbers: far above any real call, far below where a
// day's sums could overflow.
const (
	MaxTokens    = 1_000_000_000 // per call and field
	MaxImages    = 10_000
	MaxImageSide = 100_000 // pixels
	MaxSteps     = 10_000
	MaxLatencyMS = 24 * 60 * 60 * 1000
)

// Character sets as tables, so the checks cost one load per byte on the
// decoder's hot path.
var idChars, modelChars, refChars = charTable(func(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}), charTable(func(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == ':' || c == '/' || c == '_' || c == '-'
}), charTable(func(c byte) bool { return c > ' ' && c < 0x7f && c != ',' && c != '"' })

func charTable(ok func(byte) bool) (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = ok(byte(c))
	}
	return t
}

func allIn(s string, table *[256]bool) bool {
	for i := 0; i < len(s); i++ {
		if !table[s[i]] {
			return false
		}
	}
	return true
}

// CheckID reports whether s is a valid team id, cost center or key id: 1 to
// 64 characters of a-z A-Z 0-9 . _ -, starting with a letter or digit.
func CheckID(s string) error {
	if s == "" || len(s) > MaxIDLen {
		return fmt.Errorf("must be 1 to %d characters", MaxIDLen)
	}
	if !allIn(s, &idChars) {
		return fmt.Errorf("may hold only letters, digits, '.', '_' and '-'")
	}
	if c := s[0]; c == '.' || c == '_' || c == '-' {
		return fmt.Errorf("must start with a letter or digit")
	}
	return nil
}

// CheckModelID reports whether s is a plausible Bedrock model id, inference
// profile id or ARN: 1 to 2,048 characters of letters, digits and . : / _ -.
func CheckModelID(s string) error {
	if s == "" || len(s) > MaxModelIDLen {
		return fmt.Errorf("must be 1 to %d characters", MaxModelIDLen)
	}
	if !allIn(s, &modelChars) {
		return fmt.Errorf("may hold only letters, digits and . : / _ -")
	}
	return nil
}

// checkRef checks an event id or request id: printable ASCII without
// spaces or CSV and formula starters, at most 256 bytes.
func checkRef(s string) error {
	if s == "" || len(s) > MaxRefLen {
		return fmt.Errorf("must be 1 to %d characters", MaxRefLen)
	}
	if c := s[0]; !allIn(s, &refChars) || c == '=' || c == '+' || c == '-' || c == '@' {
		return fmt.Errorf("may hold only printable characters, no space, comma or quote, and may not start with = + - @")
	}
	return nil
}

// NeutralizeCell makes a CSV text cell safe to open in a spreadsheet: a cell
// starting with = + - @, a tab or a carriage return gets a leading
// apostrophe, so it is shown as text, never run as a formula.
func NeutralizeCell(s string) string {
	if s != "" {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return "'" + s
		}
	}
	return s
}
