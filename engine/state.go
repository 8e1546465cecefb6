package engine

import (
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emergent-sh/emergent/detector"
)

// stateVersion is the version of the state file SaveState writes and the only one LoadState
// reads. 2: groups keep the excess their history's bursts reached over average_over, and
// history samples take 16 bits.
const stateVersion = 2

// stateHeader opens the state file: what it was written by and for, then one ruleHeader and the
// detector's state per rule, in configuration order.
type stateHeader struct {
	Version      int
	Fingerprints []float64 // per rule, in configuration order
	Last         time.Time // the last evaluated step
	Widest       int
	BlindStart   time.Time
	Blind        []blindState
}

type blindState struct{ Start, End time.Time }

type ruleHeader struct {
	BlindSince time.Time
	Blind      bool
	Resolved   []detector.Episode
	Empty      []string
}

// ErrStateMismatch is LoadState's error for a state file written by other rules or too long
// ago: the caller starts the usual way instead.
var ErrStateMismatch = errors.New("state file does not match")

// SaveState writes what the engine has learned and has under way, for LoadState in the next
// process: every rule's groups (history, baselines, averages, episodes) and the last step.
func (e *Engine) SaveState(w io.Writer) error {
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.bootstrapped {
		return errors.New("saving state: history not loaded")
	}
	h := stateHeader{Version: stateVersion, Last: e.last, Widest: e.widest, BlindStart: e.blindStart}
	for _, r := range e.rules {
		h.Fingerprints = append(h.Fingerprints, fingerprint(e.cfg.Global, r.cfg))
	}
	for _, b := range e.blindEpisodes {
		h.Blind = append(h.Blind, blindState{b.start, b.end})
	}
	enc := gob.NewEncoder(w)
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	for _, r := range e.rules {
		if err := enc.Encode(ruleHeader{BlindSince: r.blindSince, Blind: r.blind, Resolved: r.resolved, Empty: r.empty}); err != nil {
			return fmt.Errorf("saving state: %w", err)
		}
		if err := r.det.WriteState(enc); err != nil {
			return fmt.Errorf("saving state: %w", err)
		}
	}
	return nil
}

// LoadState takes the state SaveState wrote instead of a Bootstrap, if the same rules wrote it
// and its last step is within global.replay of now; the next Advance evaluates every step since,
// as the process that wrote it would have. A file of other rules, or older, is ErrStateMismatch;
// a damaged one another error. Either way the engine is left as it was.
func (e *Engine) LoadState(r io.Reader, now time.Time) error {
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	dec := gob.NewDecoder(r)
	var h stateHeader
	if err := dec.Decode(&h); err != nil {
		return fmt.Errorf("reading state: %w", err)
	}
	switch {
	case h.Version != stateVersion:
		return fmt.Errorf("%w: version %d, want %d", ErrStateMismatch, h.Version, stateVersion)
	case len(h.Fingerprints) != len(e.cfg.Rules):
		return fmt.Errorf("%w: %d rules, the configuration has %d", ErrStateMismatch, len(h.Fingerprints), len(e.cfg.Rules))
	case h.Last.Before(now.Add(-time.Duration(e.cfg.Global.Replay))):
		return fmt.Errorf("%w: its last step %s is more than replay (%s) ago", ErrStateMismatch, h.Last.UTC().Format(time.RFC3339), e.cfg.Global.Replay)
	case h.Last.After(now):
		return fmt.Errorf("%w: its last step %s is after now", ErrStateMismatch, h.Last.UTC().Format(time.RFC3339))
	}
	for i, r := range e.cfg.Rules {
		if h.Fingerprints[i] != fingerprint(e.cfg.Global, r) {
			return fmt.Errorf("%w: rule %s changed", ErrStateMismatch, r.Name)
		}
	}
	rules := e.freshRules()
	for _, r := range rules {
		var rh ruleHeader
		if err := dec.Decode(&rh); err != nil {
			return fmt.Errorf("reading state: rule %s: %w", r.cfg.Name, err)
		}
		if err := r.det.ReadState(dec); err != nil {
			return fmt.Errorf("reading state: %w", err)
		}
		r.blindSince, r.blind, r.resolved, r.empty = rh.BlindSince, rh.Blind, rh.Resolved, rh.Empty
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rules, e.last, e.widest, e.blindStart, e.bootstrapped, e.historyErr = rules, h.Last, h.Widest, h.BlindStart, true, nil
	e.blindEpisodes = nil
	for _, b := range h.Blind {
		e.blindEpisodes = append(e.blindEpisodes, blindEpisode{b.Start, b.End})
	}
	e.metrics.observeHistory(e, true)
	return nil
}
