package main

import (
	"context"
	"time"

	"github.com/meter-dev/meter/compaction"
)

// RecompactedDay is one earlier day compacted again because its events
// changed after its last compaction (late events).
type RecompactedDay struct {
	Day      string `json:"day"`
	Reason   string `json:"reason"`
	Revision int    `json:"revision,omitempty"`
	Engine   string `json:"engine,omitempty"`
	Error    string `json:"error,omitempty"`
}

// recompactLate compacts again the closed days of the lookback
// (METER_RECOMPACT_DAYS) whose events changed, each as a new revision.
func (h *Handler) recompactLate(ctx context.Context, cfg compaction.Config, at time.Time, engines *compaction.Engines) ([]RecompactedDay, error) {
	days, err := compaction.LookbackFromEnv(h.Getenv)
	if err != nil || days == 0 {
		return nil, err
	}
	done, err := compaction.RecompactChanged(ctx, cfg, at, days, engines.Compact)
	var out []RecompactedDay
	for _, d := range done {
		r := RecompactedDay{Day: d.Day, Reason: d.Reason}
		if d.Result != nil {
			r.Revision, r.Engine = d.Result.Manifest.Revision, d.Result.Manifest.Engine
		}
		if d.Err != nil {
			r.Error = d.Err.Error()
		}
		h.Logger.Info("recompacted for late events", "day", r.Day, "reason", r.Reason, "revision", r.Revision, "engine", r.Engine, "error", r.Error)
		out = append(out, r)
	}
	return out, err
}
