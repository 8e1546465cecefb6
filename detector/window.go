package detector

import "time"

// countAt is one step's count within a window, at the step's time in Unix nanoseconds: 16 B
// where a time.Time and a float64 took 32. Nanoseconds since 1970 fit an int64 until 2262,
// past the history clock's uint32 step numbers (baseline.go), which bound the times a rule
// handles already.
type countAt struct {
	at int64
	n  float64
}

// countWindow holds the counts of a sliding window, oldest first, in a ring: a step's count is
// added at the back, and the front is dropped as the window passes it. Its buffer is sized once
// for the window's steps, and grows only if a rule is evaluated more often than its interval.
// A slice appended at the back and resliced from the front, as before, kept reallocating with
// slack behind it: about 1.4 KB per flush-storm group where the window holds 20 steps of writes.
type countWindow struct {
	buf        []countAt
	head, size int
}

// add appends the count n at time at; steps sizes the buffer when it has none yet.
func (w *countWindow) add(at time.Time, n float64, steps int) {
	if w.size == len(w.buf) {
		w.grow(steps)
	}
	w.buf[(w.head+w.size)%len(w.buf)] = countAt{at.UnixNano(), n}
	w.size++
}

func (w *countWindow) grow(steps int) {
	buf := make([]countAt, max(steps, 2*len(w.buf), 1))
	n := copy(buf, w.buf[w.head:])
	copy(buf[n:], w.buf[:w.head])
	w.buf, w.head = buf, 0
}

// dropThrough drops the counts from the front up to the first one after since.
func (w *countWindow) dropThrough(since time.Time) {
	s := since.UnixNano()
	for w.size > 0 && w.buf[w.head].at <= s {
		w.head = (w.head + 1) % len(w.buf)
		w.size--
	}
}

func (w *countWindow) len() int { return w.size }

// item returns the i-th count from the oldest.
func (w *countWindow) item(i int) countAt { return w.buf[(w.head+i)%len(w.buf)] }

func (w *countWindow) sum() float64 {
	s := 0.0
	for i := range w.size {
		s += w.item(i).n
	}
	return s
}

// clear empties the window and keeps its buffer.
func (w *countWindow) clear() { w.head, w.size = 0, 0 }

// saved lists the counts oldest first for the state file, whose layout keeps a time.Time each.
func (w *countWindow) saved() []countState {
	out := make([]countState, w.size)
	for i := range w.size {
		c := w.item(i)
		out[i] = countState{At: time.Unix(0, c.at).UTC(), N: c.n}
	}
	return out
}

// countWindowOf is the window of counts saved by countWindow.saved, for a window of steps.
func countWindowOf(cs []countState, steps int) countWindow {
	var w countWindow
	for _, c := range cs {
		w.add(c.At, c.N, steps)
	}
	return w
}
