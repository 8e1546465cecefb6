package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// deepDoc is a document of about size bytes whose single value nests as deep as size allows.
// Inline tables, dotted keys and table headers cost BurntSushi/toml time and memory in the
// square of their depth; arrays do not, but are bounded alike.
func deepDoc(shape string, size int) []byte {
	var b strings.Builder
	switch shape {
	case "inline":
		n := (size - 5) / 4
		b.WriteString("x = ")
		b.WriteString(strings.Repeat("{a=", n))
		b.WriteString("1")
		b.WriteString(strings.Repeat("}", n))
	case "array":
		n := (size - 5) / 2
		b.WriteString("x = ")
		b.WriteString(strings.Repeat("[", n))
		b.WriteString(strings.Repeat("]", n))
	case "dotted":
		b.WriteString(strings.Repeat("a.", (size-5)/2))
		b.WriteString("b = 1")
	case "header":
		b.WriteString("[")
		b.WriteString(strings.Repeat("a.", (size-3)/2))
		b.WriteString("b]")
	default:
		panic("unknown shape " + shape)
	}
	b.WriteString("\n")
	return []byte(b.String())
}

// worstDoc is the costliest document the bounds let through: MaxFileSize bytes of values each
// nested MaxNesting deep.
func worstDoc(shape string) []byte {
	var b strings.Builder
	for i := 0; ; i++ {
		var line string
		switch shape {
		case "inline": // x, then '{' and a per level
			n := (MaxNesting - 1) / 2
			line = fmt.Sprintf("x%d = %s1%s\n", i, strings.Repeat("{a=", n), strings.Repeat("}", n))
		case "dotted":
			line = fmt.Sprintf("%sb%d = 1\n", strings.Repeat("a.", MaxNesting-1), i)
		default:
			panic("unknown shape " + shape)
		}
		if b.Len()+len(line) > MaxFileSize {
			return []byte(b.String())
		}
		b.WriteString(line)
	}
}

// BenchmarkLoadDeep64K loads 64 KB documents nested as deep as they can be: before the bounds,
// the inline-table one took 49 s and 10 GB, the dotted-key one 54 s and 14 GB.
func BenchmarkLoadDeep64K(b *testing.B) {
	for _, shape := range []string{"inline", "array", "dotted", "header"} {
		doc := deepDoc(shape, 64<<10)
		b.Run(shape, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if _, err := Load(doc, "deep.toml"); err == nil {
					b.Fatal("loaded without error")
				}
			}
		})
	}
}

// BenchmarkLoadWorstAllowed loads the costliest documents within the bounds: what a
// pathological file can still cost.
func BenchmarkLoadWorstAllowed(b *testing.B) {
	for _, shape := range []string{"inline", "dotted"} {
		doc := worstDoc(shape)
		b.Run(shape, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if _, err := Load(doc, "worst.toml"); err == nil {
					b.Fatal("loaded without error") // every key is unknown
				}
			}
		})
	}
}

// BenchmarkCheckBoundsShipped is the bounds' own cost on the shipped rules.toml.
func BenchmarkCheckBoundsShipped(b *testing.B) {
	doc, err := os.ReadFile(filepath.Join("..", "rules.toml"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if err := checkBounds(doc, "rules.toml"); err != nil {
			b.Fatal(err)
		}
	}
}
