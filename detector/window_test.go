package detector

import (
	"testing"
	"time"
)

// TestCountWindowSlides: the ring keeps what a slice appended at the back and resliced from the
// front kept, through wrap-arounds, a growth past its sized steps and a clear.
func TestCountWindowSlides(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const window, steps = 5 * time.Minute, 11 // 30 s steps
	var ring countWindow
	var slice []countAt
	check := func(at time.Time) {
		t.Helper()
		if ring.len() != len(slice) {
			t.Fatalf("at %s: %d counts, want %d", at, ring.len(), len(slice))
		}
		want := 0.0
		for i, c := range slice {
			want += c.n
			if ring.item(i) != c {
				t.Fatalf("at %s: count %d is %+v, want %+v", at, i, ring.item(i), c)
			}
		}
		if got := ring.sum(); got != want {
			t.Fatalf("at %s: sum %v, want %v", at, got, want)
		}
	}
	for i := range 100 {
		at := start.Add(time.Duration(i) * 30 * time.Second)
		if 40 <= i && i < 50 { // evaluated at every 10 s for a while: more counts than steps
			at = start.Add(40*30*time.Second + time.Duration(i-40)*10*time.Second)
		}
		if i%7 != 3 { // some steps count nothing
			ring.add(at, float64(i), steps)
			slice = append(slice, countAt{at.UnixNano(), float64(i)})
		}
		if i == 70 {
			ring.clear()
			slice = slice[:0]
		}
		ring.dropThrough(at.Add(-window))
		for len(slice) > 0 && slice[0].at <= at.Add(-window).UnixNano() {
			slice = slice[1:]
		}
		check(at)
	}
	if len(ring.buf) < steps {
		t.Errorf("buffer of %d counts, sized for %d", len(ring.buf), steps)
	}
	saved := countWindowOf(ring.saved(), steps)
	if saved.len() != ring.len() || saved.sum() != ring.sum() || saved.item(0) != ring.item(0) {
		t.Errorf("saved and read back: %d counts summing to %v, want %d summing to %v", saved.len(), saved.sum(), ring.len(), ring.sum())
	}
}
