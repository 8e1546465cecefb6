package detector

import (
	"testing"
	"time"
)

// TestGroupWithoutRedisIsQuiet: inbound names every service, and only some have a Redis. A
// storm rule's group that never had a keyspace is inactive, not unknown (forever); one whose
// keyspace vanished is unknown (the exporter is gone, not the flushes).
func TestGroupWithoutRedisIsQuiet(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    series
		want State
	}{
		{"never had Redis", series{inbound: "5x10"}, StateInactive},
		{"Redis vanished", series{inbound: "5x10", keys: "500x5"}, StateUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(flushRule(), global(time.Minute))
			run(t, r, tc.s, t0, time.Minute)
			if got := r.Status()[0].State; got != tc.want {
				t.Errorf("state %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCarryKeepsTheStartOfAnEpisodeOlderThanTheReplay: an episode an earlier process had open
// keeps its start when the replay finds it breaching at every step after the carry bound, and
// does not when the group was quiet after it (the old episode ended; this one is new).
func TestCarryKeepsTheStartOfAnEpisodeOlderThanTheReplay(t *testing.T) {
	earlier := t0.Add(-3 * time.Hour)
	for _, tc := range []struct {
		name, work string
		wantStart  time.Time
	}{
		{"breaching throughout", "2x20", earlier},
		{"quiet, then breaching", "0x5 2x20", t0.Add(8 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(tokenRule("proportional"), global(time.Minute))
			r.Carry(map[string]Carried{GroupString(service): {Start: earlier}}, t0.Add(time.Minute))
			events := run(t, r, series{inbound: "5x25", work: tc.work}, t0, time.Minute)
			if len(events) == 0 {
				t.Fatal("no episode fired")
			}
			if got := events[0].Episode.Start; !got.Equal(tc.wantStart) {
				t.Errorf("start %v, want %v", got, tc.wantStart)
			}
		})
	}
}
