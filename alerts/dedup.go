package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// episodeLogRetention is how long a delivered episode is remembered after its last post.
// Episodes live hours at most; a week covers any restart or outage without growing forever.
const episodeLogRetention = 7 * 24 * time.Hour

// episodeLog remembers which episode transitions a receiver delivered, so that an episode is
// posted firing once and resolved at most once, across retries and, when it has a file,
// across restarts. It is the one local state the daemon keeps, optional (--storage.path) and
// written atomically: everything else is derived from Prometheus, so losing it costs at most a
// repeated Slack post, never a missed one.
type episodeLog struct {
	mu      sync.Mutex
	path    string // "" keeps the log in memory only
	records map[string]episodeRecord
	now     func() time.Time
}

// episodeRecord is what was delivered for one episode.
type episodeRecord struct {
	FiredAt    time.Time `json:"fired_at"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// Channel and TS locate the Slack message of the firing post, to thread the resolve under
	// it and edit it.
	Channel string `json:"channel,omitempty"`
	TS      string `json:"ts,omitempty"`
	// Edited reports that the firing message was edited to show the resolve.
	Edited bool `json:"edited,omitempty"`
	// Revision is the latest update of the episode posted.
	Revision int `json:"revision,omitempty"`
}

func (r episodeRecord) lastPost() time.Time {
	if r.ResolvedAt.After(r.FiredAt) {
		return r.ResolvedAt
	}
	return r.FiredAt
}

type episodeLogFile struct {
	Version  int                      `json:"version"`
	Episodes map[string]episodeRecord `json:"episodes"`
}

// openEpisodeLog loads the log kept in path, or starts an empty one if path is "" or does not
// exist yet.
func openEpisodeLog(path string, now func() time.Time) (*episodeLog, error) {
	if now == nil {
		now = time.Now
	}
	l := &episodeLog{path: path, records: map[string]episodeRecord{}, now: now}
	if path == "" {
		return l, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file: %w", err)
	}
	var f episodeLogFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode state file %s: %w", path, err)
	}
	for k, r := range f.Episodes {
		l.records[k] = r
	}
	l.prune()
	return l, nil
}

func (l *episodeLog) get(key string) (episodeRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.records[key]
	return r, ok
}

// put records what was delivered for an episode and persists the log. The delivery already
// happened, so a failed save is returned for logging but the record is kept in memory.
func (l *episodeLog) put(key string, r episodeRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records[key] = r
	l.prune()
	return l.save()
}

// prune forgets episodes whose last post is older than the retention. l.mu must be held.
func (l *episodeLog) prune() {
	cutoff := l.now().Add(-episodeLogRetention)
	for k, r := range l.records {
		if r.lastPost().Before(cutoff) {
			delete(l.records, k)
		}
	}
}

// save writes the log to a temporary file in the same directory and renames it over the old
// one, so that a crash leaves either the old or the new log, never half of one. l.mu must be
// held.
func (l *episodeLog) save() error {
	if l.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(episodeLogFile{Version: 1, Episodes: l.records}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(l.path), filepath.Base(l.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return fmt.Errorf("replace state file: %w", err)
	}
	return nil
}
