package config

import (
	"bytes"
	"fmt"
)

// Input bounds, checked before the TOML decoder sees a byte. BurntSushi/toml walks and copies
// the whole key path for every key and table it reads, so its time and memory grow with the
// square of the nesting: a 64 KB file of nested inline tables took 49 s and 10 GB to reject.
// Bounding size and depth bounds both.
const (
	// MaxFileSize is the largest configuration accepted: the shipped rules.toml, two rules with
	// a comment on every key, is 9 KB, so 1 MiB holds hundreds of rules.
	MaxFileSize = 1 << 20

	// MaxNesting is the deepest a value may nest, counting each part of its table header and
	// key and each array or inline table around it: the schema's deepest value spelled all
	// inline, rules = [{signals = [{query = ".."}]}], is 7 deep, and at 32 a full-size file of
	// the costliest shape loads in under 2 s and 0.5 GB (376 real rules: 60 ms).
	MaxNesting = 32
)

// checkBounds rejects data bigger than MaxFileSize or nested deeper than MaxNesting, with an
// error naming file (and the line, for nesting).
func checkBounds(data []byte, file string) error {
	if len(data) > MaxFileSize {
		return tooLarge(file, int64(len(data)))
	}
	if off := nestingOverflow(data, MaxNesting); off >= 0 {
		line := 1 + bytes.Count(data[:off], []byte("\n"))
		return Errors{{File: file, Line: line, Msg: fmt.Sprintf(
			"nested more than %d levels deep (each table header or key part, array and inline table is a level)", MaxNesting)}}
	}
	return nil
}

// tooLarge reports a file of size bytes over MaxFileSize; size < 0 when only the excess is known.
func tooLarge(file string, size int64) error {
	msg := fmt.Sprintf("file is over the %d-byte (%d MiB) limit for a configuration file", MaxFileSize, MaxFileSize>>20)
	if size >= 0 {
		msg = fmt.Sprintf("file is %d bytes, over the %d-byte (%d MiB) limit for a configuration file", size, MaxFileSize, MaxFileSize>>20)
	}
	return Errors{{File: file, Msg: msg}}
}

// nestingOverflow returns the offset in data where a value first nests deeper than limit, or
// -1. It is a hand-written scanner (no TOML library exposes depth before doing the costly
// work) that knows just enough TOML to tell nesting from text: strings of all four kinds,
// comments, table headers, keys and values. It validates nothing: on input it does not
// understand it skips a byte and goes on, since the decoder stops at the first syntax error
// and so never reaches nesting past it.
func nestingOverflow(data []byte, limit int) int {
	s := scanner{data: data, limit: limit}
	header := 0 // parts of the current [table] or [[array]] header: keys under it start there
	for {
		s.skipBlank(true)
		if s.pos >= len(data) {
			return -1
		}
		start := s.pos
		if data[s.pos] == '[' { // at the start of a statement, '[' opens a header, not an array
			s.pos++
			if s.pos < len(data) && data[s.pos] == '[' { // [[array of tables]]
				s.pos++
			}
			header = s.key()
			if header > s.limit {
				return start
			}
			continue // the closing ']' or ']]' is skipped below as "not a key"
		}
		depth := header + s.key()
		if depth > s.limit {
			return start
		}
		s.skipBlank(false)
		if s.pos < len(data) && data[s.pos] == '=' {
			s.pos++
			if off := s.value(depth); off >= 0 {
				return off
			}
		} else if s.pos == start {
			s.pos++ // not a key: skip a byte so the scan always moves on
		}
	}
}

type scanner struct {
	data  []byte
	pos   int
	limit int // deepest nesting allowed
}

// skipBlank skips spaces and tabs and, if lines, newlines and comments too.
func (s *scanner) skipBlank(lines bool) {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t':
			s.pos++
		case '\n', '\r':
			if !lines {
				return
			}
			s.pos++
		case '#':
			if !lines {
				return
			}
			for s.pos < len(s.data) && s.data[s.pos] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

// key skips a possibly dotted key and returns how many parts it has (0 if there is none).
func (s *scanner) key() int {
	parts := 0
	for {
		s.skipBlank(false)
		if s.pos >= len(s.data) {
			return parts
		}
		switch c := s.data[s.pos]; {
		case c == '"' || c == '\'':
			s.skipString()
		case isBareKeyChar(c):
			for s.pos < len(s.data) && isBareKeyChar(s.data[s.pos]) {
				s.pos++
			}
		default:
			return parts
		}
		parts++
		s.skipBlank(false)
		if s.pos >= len(s.data) || s.data[s.pos] != '.' {
			return parts
		}
		s.pos++
	}
}

func isBareKeyChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// value skips the value after "key =", whose key nests depth deep, and returns the offset of the
// first array or inline table (or key inside one) nested deeper than the limit, or -1. It keeps
// its own stack rather than recursing; the stack never exceeds s.limit entries.
func (s *scanner) value(depth int) int {
	type open struct {
		close byte // ']' or '}'
		depth int  // depth of the values directly inside
	}
	var stack []open
	for {
		// Only inside brackets may a value continue over lines.
		s.skipBlank(len(stack) > 0)
		if s.pos >= len(s.data) {
			return -1
		}
		switch c := s.data[s.pos]; c {
		case '[', '{':
			depth++
			if depth > s.limit {
				return s.pos
			}
			s.pos++
			if c == '[' {
				stack = append(stack, open{']', depth})
				continue // at the first element
			}
			stack = append(stack, open{'}', depth})
			if off := s.inlineKey(&depth); off >= 0 {
				return off
			}
			continue // at the first key's value
		case '"', '\'':
			s.skipString()
		case ']', '}': // an empty array or table, or a trailing comma: no value here
		default:
			s.skipScalar()
		}
		// After a value: close brackets, or move to the next element or key.
		for {
			s.skipBlank(len(stack) > 0)
			if len(stack) == 0 || s.pos >= len(s.data) {
				return -1
			}
			top := stack[len(stack)-1]
			c := s.data[s.pos]
			if c == top.close {
				s.pos++
				stack = stack[:len(stack)-1]
				continue
			}
			if c != ',' {
				return -1 // not TOML: the decoder stops here
			}
			s.pos++
			depth = top.depth
			if top.close == '}' {
				if off := s.inlineKey(&depth); off >= 0 {
					return off
				}
			}
			break
		}
	}
}

// inlineKey skips "key =" inside an inline table, adds the key's parts to *depth, and returns
// the key's offset if that makes it deeper than the limit, or -1.
func (s *scanner) inlineKey(depth *int) int {
	s.skipBlank(true) // TOML 1.1, which the decoder reads, allows newlines in inline tables
	start := s.pos
	*depth += s.key()
	if *depth > s.limit {
		return start
	}
	s.skipBlank(false)
	if s.pos < len(s.data) && s.data[s.pos] == '=' {
		s.pos++
	}
	return -1
}

// skipScalar skips a number, boolean or date-time (which may hold a space, as in
// "1979-05-27 07:32:00Z").
func (s *scanner) skipScalar() {
	start := s.pos
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ',', '[', ']', '{', '}', '"', '\'', '#', '\n', '\r':
			if s.pos == start {
				s.pos++ // not a scalar: skip a byte so the scan always moves on
			}
			return
		}
		s.pos++
	}
}

// skipString skips a basic ("..", with \ escapes) or literal ('..') string, single- or
// multi-line, starting at its opening quote. An unterminated string runs to the end of its line
// (single-line) or of data (multi-line), where the decoder stops too.
func (s *scanner) skipString() {
	q := s.data[s.pos]
	if bytes.HasPrefix(s.data[s.pos:], []byte{q, q, q}) {
		s.pos += 3
		for s.pos < len(s.data) {
			switch c := s.data[s.pos]; {
			case c == '\\' && q == '"':
				s.pos = min(s.pos+2, len(s.data)) // also skips the newline of a line-ending backslash
			case bytes.HasPrefix(s.data[s.pos:], []byte{q, q, q}):
				s.pos += 3
				// Up to two quotes may end the text right before the closing three.
				for n := 0; n < 2 && s.pos < len(s.data) && s.data[s.pos] == q; n++ {
					s.pos++
				}
				return
			default:
				s.pos++
			}
		}
		return
	}
	s.pos++
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; {
		case c == '\\' && q == '"':
			s.pos = min(s.pos+2, len(s.data))
		case c == q:
			s.pos++
			return
		case c == '\n':
			return
		default:
			s.pos++
		}
	}
}
