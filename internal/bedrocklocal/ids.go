package bedrocklocal

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// newUUID returns a random version 4 UUID, the form of Bedrock request ids
// and CloudTrail event ids.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	return formatUUID(b)
}

// uuidFromSeed returns a UUID-shaped id derived from parts, for ids that must
// repeat when the request repeats.
func uuidFromSeed(parts ...string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], seedOf(parts...))
	binary.BigEndian.PutUint64(b[8:], seedOf(append(parts, "low")...))
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// randomAlnum returns n random characters from [0-9A-Za-z], the alphabet of
// the unique part of CloudTrail log file names.
func randomAlnum(n int) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
