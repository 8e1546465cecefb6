package sources

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// scanner reads the JSON of one answer from a reader through a buffer of its own, token by
// token, allocating nothing but what the caller keeps. It reads only what a query_range answer
// holds (objects, arrays, strings, numbers, true, false, null) and skips what the decoder does
// not read without making a string of it: json-iterator, which the decoder used before, makes a
// string of every field name it skips (Skip, ReadObject, ReadObjectCB and ReadMapCB alike), a
// label name per series in every answer (7 MB a cycle at 100 000 groups), and reads a series
// through a struct decoder whose per-field calls cost as much as the samples.
type scanner struct {
	r   io.Reader
	buf []byte
	pos int // the next byte to read, in buf
	end int // buf[:end] holds what was read
	// err is the first error met: the reader's, or the answer's syntax (a *syntaxError). Once
	// set, every read returns zero values.
	err error
	// capture, while capturing, receives every byte read from buf[captureFrom:] (rawObject).
	capture     []byte
	capturing   bool
	captureFrom int
	scratch     []byte // a string's bytes, when it has escapes or crosses a refill
}

// syntaxError is an answer that is not the JSON it should be.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

// maxDepth bounds the nesting of values the scanner skips, so an answer cannot exhaust the
// stack (json-iterator's bound is the same).
const maxDepth = 10000

// scanners holds scanners with their buffers, so an answer does not allocate its 64 KiB.
var scanners = sync.Pool{New: func() any { return &scanner{buf: make([]byte, streamBuffer)} }}

// newScanner returns a pooled scanner reading r; release returns it.
func newScanner(r io.Reader) *scanner {
	s := scanners.Get().(*scanner)
	*s = scanner{r: r, buf: s.buf, scratch: s.scratch[:0]}
	return s
}

// release returns s to the pool; nothing it handed out may be used afterwards.
func (s *scanner) release() {
	*s = scanner{buf: s.buf, scratch: s.scratch[:0]}
	scanners.Put(s)
}

// fail records the first error.
func (s *scanner) fail(format string, args ...any) {
	if s.err == nil {
		s.err = &syntaxError{msg: fmt.Sprintf(format, args...)}
	}
}

// fill reads more of the answer into the buffer, keeping nothing before pos. It returns false
// at the end of the answer or on an error.
func (s *scanner) fill() bool {
	if s.err != nil {
		return false
	}
	if s.capturing {
		s.capture = append(s.capture, s.buf[s.captureFrom:s.pos]...) // what was read of the object so far
		s.captureFrom = 0
	}
	s.pos, s.end = 0, 0
	for s.end == 0 {
		n, err := s.r.Read(s.buf)
		s.end = n
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) {
				s.fail("unexpected end of the answer")
			} else {
				s.err = err
			}
			return false
		}
	}
	return true
}

// peek skips white space and returns the next byte without reading it; 0 at the end.
func (s *scanner) peek() byte {
	if s.err != nil {
		return 0
	}
	for {
		for s.pos < s.end {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\r', '\n':
				s.pos++
			default:
				return c
			}
		}
		if !s.fill() {
			return 0
		}
	}
}

// next skips white space and reads the next byte; 0 at the end.
func (s *scanner) next() byte {
	c := s.peek()
	if c != 0 {
		s.pos++
	}
	return c
}

// expect reads the byte c, after white space.
func (s *scanner) expect(c byte, where string) bool {
	if got := s.next(); got != c {
		s.unexpected(got, where)
		return false
	}
	return true
}

// unexpected fails on byte c, found where something else was due.
func (s *scanner) unexpected(c byte, where string) {
	if c == 0 {
		s.fail("unexpected end of the answer in %s", where)
		return
	}
	s.fail("invalid character %q in %s", c, where)
}

// more reads what follows an element of an object or array closed by end, or its opening:
// true when an element follows, false at end (or on an error). first is true until the first
// element, for an empty object or array.
func (s *scanner) more(end byte, first *bool, where string) bool {
	c := s.peek()
	switch {
	case c == end:
		s.pos++
		return false
	case *first && c != 0:
		*first = false
		return true
	case c == ',' && !*first:
		s.pos++
		return true
	}
	s.unexpected(c, where)
	return false
}

// null reads a null if one is next, and says whether it did.
func (s *scanner) null() bool {
	if s.peek() != 'n' {
		return false
	}
	s.literal("null")
	return true
}

// literal reads the word w (true, false or null), whose first byte is next.
func (s *scanner) literal(w string) {
	for i := range len(w) {
		if s.pos >= s.end && !s.fill() {
			s.fail("unexpected end of the answer in %s", w)
			return
		}
		if s.buf[s.pos] != w[i] {
			s.fail("invalid character %q in %s", s.buf[s.pos], w)
			return
		}
		s.pos++
	}
}

// str reads a string and returns its bytes, unescaped, valid until the next read.
func (s *scanner) str(where string) []byte {
	if !s.expect('"', where) {
		return nil
	}
	// The common case: no escape, and the closing quote in the buffer.
fast:
	for i := s.pos; i < s.end; i++ {
		switch c := s.buf[i]; {
		case c == '"':
			b := s.buf[s.pos:i]
			s.pos = i + 1
			return b
		case c == '\\' || c < 0x20:
			break fast
		}
	}
	s.scratch = s.scratch[:0]
	for {
		if s.pos >= s.end && !s.fill() {
			s.fail("unexpected end of the answer in a string in %s", where)
			return nil
		}
		c := s.buf[s.pos]
		s.pos++
		switch {
		case c == '"':
			return s.scratch
		case c < 0x20:
			s.fail("control character %q in a string in %s", c, where)
			return nil
		case c != '\\':
			s.scratch = append(s.scratch, c)
			continue
		}
		if s.pos >= s.end && !s.fill() {
			s.fail("unexpected end of the answer in a string in %s", where)
			return nil
		}
		e := s.buf[s.pos]
		s.pos++
		if e == 'u' {
			s.unicode(where)
		} else {
			s.escape(e, where)
		}
		if s.err != nil {
			return nil
		}
	}
}

// escape appends the character a one-letter escape (after its backslash) stands for.
func (s *scanner) escape(e byte, where string) {
	switch e {
	case '"', '\\', '/':
		s.scratch = append(s.scratch, e)
	case 'b':
		s.scratch = append(s.scratch, '\b')
	case 'f':
		s.scratch = append(s.scratch, '\f')
	case 'n':
		s.scratch = append(s.scratch, '\n')
	case 'r':
		s.scratch = append(s.scratch, '\r')
	case 't':
		s.scratch = append(s.scratch, '\t')
	default:
		s.fail("invalid escape %q in a string in %s", e, where)
	}
}

// unicode appends the rune of a \u escape (after its \u), and of the one after it when the two
// are a surrogate pair, as encoders write a rune past the BMP. A surrogate alone is not a rune:
// it reads as U+FFFD, as encoding/json reads it.
func (s *scanner) unicode(where string) {
	r := s.hex4(where)
	if !utf16.IsSurrogate(r) || s.peekByte() != '\\' {
		s.scratch = utf8.AppendRune(s.scratch, r) // U+FFFD for a surrogate
		return
	}
	s.pos++
	switch e := s.peekByte(); e {
	case 0: // the end: fill said why
		return
	case 'u':
	default:
		s.scratch = utf8.AppendRune(s.scratch, utf8.RuneError)
		s.pos++
		s.escape(e, where)
		return
	}
	s.pos++
	r2 := s.hex4(where)
	if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
		s.scratch = utf8.AppendRune(s.scratch, pair)
		return
	}
	s.scratch = utf8.AppendRune(s.scratch, utf8.RuneError)
	s.scratch = utf8.AppendRune(s.scratch, r2)
}

// peekByte returns the next byte, white space included; 0 at the end.
func (s *scanner) peekByte() byte {
	if s.pos >= s.end && !s.fill() {
		return 0
	}
	return s.buf[s.pos]
}

// hex4 reads the four hex digits of a \u escape.
func (s *scanner) hex4(where string) rune {
	var r rune
	for range 4 {
		c := s.peekByte()
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			s.fail("invalid \\u escape in a string in %s", where)
			return utf8.RuneError
		}
		s.pos++
		r = r<<4 | rune(d)
	}
	return r
}

// field reads an object's field name and the colon after it, and returns the name's index
// in names, -1 for another. The name is compared before the colon is read: reading on may
// refill the buffer the name lies in.
func (s *scanner) field(where string, names ...string) int {
	name := s.str(where)
	i := -1
	for j, n := range names {
		if string(name) == n {
			i = j
			break
		}
	}
	if !s.expect(':', where) {
		return -1
	}
	return i
}

// text reads a string as a Go string (allocated: for what the caller keeps).
func (s *scanner) text(where string) string { return string(s.str(where)) }

// number reads a JSON number as a float64.
func (s *scanner) number(where string) float64 {
	c := s.peek()
	if c != '-' && (c < '0' || c > '9') {
		s.unexpected(c, where)
		return 0
	}
	start := s.pos
	for i := s.pos; i < s.end; i++ {
		switch c := s.buf[i]; {
		case '0' <= c && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			continue
		}
		// The whole number is in the buffer: parsed where it lies.
		s.pos = i
		return s.parseFloat(s.buf[start:i], where)
	}
	s.scratch = s.scratch[:0]
	for {
		if s.pos >= s.end && !s.fill() {
			return 0
		}
		switch c := s.buf[s.pos]; {
		case '0' <= c && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			s.scratch = append(s.scratch, c)
			s.pos++
			continue
		}
		return s.parseFloat(s.scratch, where)
	}
}

// parseFloat parses b, a number as JSON writes it, without a string of it.
func (s *scanner) parseFloat(b []byte, where string) float64 {
	v, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64) // b is not kept
	if err != nil {
		s.fail("invalid number %q in %s", b, where)
	}
	return v
}

// skip reads a value of any kind and drops it.
func (s *scanner) skip(where string) { s.skipDepth(where, 0) }

func (s *scanner) skipDepth(where string, depth int) {
	if depth > maxDepth {
		s.fail("values nested more than %d deep in %s", maxDepth, where)
		return
	}
	switch c := s.peek(); c {
	case '"':
		s.str(where)
	case '{':
		s.pos++
		for first := true; s.more('}', &first, where); {
			s.field(where)
			s.skipDepth(where, depth+1)
		}
	case '[':
		s.pos++
		for first := true; s.more(']', &first, where); {
			s.skipDepth(where, depth+1)
		}
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	default:
		s.number(where)
	}
}

// rawObject reads an object of strings (a series' "metric") and appends its JSON, as the
// answer wrote it, to dst. null reads as null.
func (s *scanner) rawObject(dst []byte, where string) []byte {
	if s.peek() == 'n' {
		s.literal("null")
		return append(dst, "null"...)
	}
	if s.peek() != '{' {
		s.unexpected(s.peek(), where)
		return dst
	}
	s.capturing, s.capture, s.captureFrom = true, dst, s.pos
	s.pos++
	for first := true; s.more('}', &first, where); {
		s.field(where)
		if c := s.peek(); c != '"' {
			s.unexpected(c, where+" (a label value is a string)")
			break
		}
		s.str(where)
	}
	s.capture = append(s.capture, s.buf[s.captureFrom:s.pos]...) // since the object began, or the last refill
	s.capturing = false
	return s.capture
}
