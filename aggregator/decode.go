package aggregator

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// Decoded is one record decoded on its own, for AddDecoded: the event, or
// the record quarantined with the reason.
type Decoded struct {
	Row         schemas.EventRow // the valid event, as its events table row
	Quarantined *Quarantined     // nil when Row holds a valid event
}

// RecordDecoder decodes records apart from an Aggregator, so that the records
// of one batch can be decoded on several goroutines (one RecordDecoder each)
// and then added in their order with AddDecoded: Add is Decode followed by
// AddDecoded. It keeps the repeated strings it has seen (schemas.Decoder)
// and is not safe for concurrent use.
type RecordDecoder struct {
	dec schemas.Decoder
}

// Decode decodes and checks one record: a record that cannot be decoded or
// validated, or whose event time is out of bounds, comes back quarantined
// with the reason.
func (d *RecordDecoder) Decode(in Input, received time.Time) Decoded {
	var out Decoded
	out.Quarantined = d.DecodeTo(in, received, &out.Row)
	return out
}

// DecodeTo is Decode into row: it returns nil when row now holds the valid
// event, or the record quarantined with the reason (row is then left as it
// was).
func (d *RecordDecoder) DecodeTo(in Input, received time.Time, row *schemas.EventRow) *Quarantined {
	e, err := d.dec.Parse(in.Data)
	if err != nil {
		q := &Quarantined{Source: in.Source, PartitionKey: in.PartitionKey, Reason: err.Error(), Kind: QuarantineInvalid, Record: string(in.Data), Received: received.UTC()}
		if !json.Valid(in.Data) {
			q.Kind = QuarantineMalformed
		}
		if rest, ok := strings.CutPrefix(in.PartitionKey, "malformed/"); ok {
			if i := strings.LastIndexByte(rest, ':'); i >= 0 {
				q.Origin = rest[:i]
				q.Line, _ = strconv.Atoi(rest[i+1:])
			}
		}
		if fe, ok := err.(*schemas.FieldError); ok {
			q.Field = fe.Field
		}
		return q
	}
	arrived := in.Arrival
	if arrived.IsZero() {
		arrived = received
	}
	var why string
	switch {
	case e.Timestamp.After(arrived.Add(MaxAhead)):
		why = fmt.Sprintf("event time %s is after the record reached the stream (%s) by more than %s", schemas.FormatTime(e.Timestamp), schemas.FormatTime(arrived), MaxAhead)
	case e.Timestamp.Before(EarliestEventTime):
		why = fmt.Sprintf("event time %s is before %s", schemas.FormatTime(e.Timestamp), EarliestEventTime.Format(time.DateOnly))
	}
	if why != "" {
		return &Quarantined{Source: in.Source, PartitionKey: in.PartitionKey, Reason: why,
			Kind: QuarantineInvalid, Field: "timestamp", Record: string(in.Data), Received: received.UTC()}
	}
	*row = schemas.NewEventRow(&e)
	return nil
}

// AddDecoded adds one decoded record to the batch: its event, or its
// quarantine entry.
func (a *Aggregator) AddDecoded(d *Decoded) {
	if d.Quarantined != nil {
		a.quarantined = append(a.quarantined, *d.Quarantined)
		return
	}
	a.addRow(&d.Row)
}

// AddRows adds valid events, as their rows, in order: what AddDecoded of
// each would add. The aggregator takes rows over (the batch Flush returns
// may hold it): the caller must not use it afterwards.
func (a *Aggregator) AddRows(rows []schemas.EventRow) {
	if len(a.events) == 0 {
		a.events = rows
	} else {
		a.events = append(a.events, rows...)
	}
	for i := range rows {
		a.count(&rows[i])
	}
}
