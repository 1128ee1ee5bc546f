package bedrocklocal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"net/http"
)

// eventWriter writes AWS event-stream messages (application/vnd.amazon.eventstream)
// and flushes each one, so a client sees every event as it is produced.
//
// A message is: total length (4 bytes), headers length (4), CRC32 of those 8
// bytes (4), headers, payload, CRC32 of everything before it (4); all
// big-endian. Each header is name length (1), name, value type (1; 7 is a
// string), value length (2), value.
type eventWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

func newEventWriter(w http.ResponseWriter) *eventWriter {
	return &eventWriter{w: w, rc: http.NewResponseController(w)}
}

type header struct{ name, value string }

func (e *eventWriter) message(headers []header, payload []byte) error {
	var hb bytes.Buffer
	for _, h := range headers {
		hb.WriteByte(byte(len(h.name)))
		hb.WriteString(h.name)
		hb.WriteByte(7)
		binary.Write(&hb, binary.BigEndian, uint16(len(h.value)))
		hb.WriteString(h.value)
	}
	total := uint32(12 + hb.Len() + len(payload) + 4)

	e.buf.Reset()
	binary.Write(&e.buf, binary.BigEndian, total)
	binary.Write(&e.buf, binary.BigEndian, uint32(hb.Len()))
	binary.Write(&e.buf, binary.BigEndian, crc32.ChecksumIEEE(e.buf.Bytes()))
	e.buf.Write(hb.Bytes())
	e.buf.Write(payload)
	binary.Write(&e.buf, binary.BigEndian, crc32.ChecksumIEEE(e.buf.Bytes()))

	if _, err := e.w.Write(e.buf.Bytes()); err != nil {
		return err
	}
	return e.rc.Flush()
}

// event writes one event of the given type with a JSON payload.
func (e *eventWriter) event(eventType string, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return e.message([]header{
		{":event-type", eventType},
		{":content-type", "application/json"},
		{":message-type", "event"},
	}, payload)
}

// exception writes a modelled exception; memberName is the exception's
// member name in the stream union (e.g. modelStreamErrorException).
func (e *eventWriter) exception(memberName string, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return e.message([]header{
		{":exception-type", memberName},
		{":content-type", "application/json"},
		{":message-type", "exception"},
	}, payload)
}
