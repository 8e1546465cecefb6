// Package sources owns where series come from: the Prometheus HTTP API and recorded files used
// for replay and tests. It returns series exactly as the backend answered them; it holds no
// evaluation logic (no rates, baselines or thresholds — those belong to detector and engine).
package sources

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// MaxPointsPerSeries is the most steps one range query may span. Prometheus refuses range
// queries that would return more than 11 000 points per series, so every source enforces the
// same limit: a replay that works on a recording must also work against Prometheus.
const MaxPointsPerSeries = 11000

// Range is a range query's window. Start and End are inclusive and already aligned by the
// caller (to multiples of Step, so every replica asks for the same timestamps).
type Range struct {
	Start, End time.Time
	Step       time.Duration
}

// Source answers range queries. It is implemented by Prometheus and Recorded.
type Source interface {
	// QueryRange evaluates query at Start, Start+Step, ... End. Warnings describe a result
	// that may be partial (e.g. a remote-read or store was unavailable); callers decide whether
	// partial data is usable. The series' Metric maps may be shared with other answers
	// (Prometheus decodes a label set once), so callers must not modify them.
	QueryRange(ctx context.Context, query string, r Range) (model.Matrix, Warnings, error)
}

// Warnings are the non-fatal problems a backend reported with a result.
type Warnings []string

// steps is the number of evaluation timestamps in r; r must be valid.
func (r Range) steps() int64 {
	return int64(r.End.Sub(r.Start)/r.Step) + 1
}

// validate rejects ranges no backend could answer.
func (r Range) validate() error {
	switch {
	case r.Step <= 0:
		return fmt.Errorf("range step %s must be positive", r.Step)
	case r.Step%time.Millisecond != 0:
		// Prometheus timestamps are milliseconds; a finer step cannot be honoured exactly.
		return fmt.Errorf("range step %s must be a whole number of milliseconds", r.Step)
	case r.Start.IsZero() || r.End.IsZero():
		return errors.New("range start and end must be set")
	case r.End.Before(r.Start):
		return fmt.Errorf("range end %s is before start %s", fmtTime(r.End), fmtTime(r.Start))
	}
	return nil
}

// fmtTime formats t for messages and files: UTC, RFC 3339, sub-seconds only when present.
func fmtTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}
