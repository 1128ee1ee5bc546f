package invoker

// Request metadata: every Bedrock call carries the team, its cost center and
// the usage event's event_id (minted before the call), so that Bedrock's own
// model invocation logs can be joined to meter's events (`meter reconcile
// --invocation-logs`). InvokeModel and InvokeModelWithResponseStream take it
// in the X-Amzn-Bedrock-Request-Metadata header (the SDK's RequestMetadata
// string), Converse and ConverseStream in the requestMetadata field.

import (
	"strings"

	"github.com/meter-dev/meter/schemas"
)

// eventIDOf returns the call's event id, minting it on first use: before the
// Bedrock call, so the same id is in the request metadata and the event.
func (c *call) eventIDOf() string {
	if c.eventID == "" {
		c.eventID = newID()
	}
	return c.eventID
}

// metadataMap is the call's request metadata for Converse and ConverseStream.
func (c *call) metadataMap() map[string]string {
	m := map[string]string{schemas.MetadataTeamID: c.team.ID, schemas.MetadataEventID: c.eventIDOf()}
	if c.team.CostCenter != "" {
		m[schemas.MetadataCostCenter] = c.team.CostCenter
	}
	return m
}

// metadataHeader is the call's request metadata as the JSON object the
// X-Amzn-Bedrock-Request-Metadata header carries. Team ids, cost centers and
// event ids are checked ids (letters, digits, . _ -), so they need no escaping.
func (c *call) metadataHeader() *string {
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
