package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestNestingOverflow(t *testing.T) {
	const limit = 3
	tests := []struct {
		name string
		doc  string
		line int // line of the first level past limit; 0: within it
	}{
		{"scalar", `a = 1`, 0},
		{"dotted key at limit", `a.b.c = 1`, 0},
		{"dotted key over", `a.b.c.d = 1`, 1},
		{"quoted key parts", "\"a.b\" .\t'c.d'\t. e\t=\t1", 0},
		{"quoted key parts over", `"a".b.'c'.d = 1`, 1},
		{"header at limit", "[a.b.c]\n", 0},
		{"header over", "x = 1\n[a.b.c.d]\n", 2},
		{"header adds to keys", "[a.b]\nc = 1\nc.d = 1\n", 3},
		{"array of tables header", "[[a.b]]\n[[a.b.c.d]]\n", 2},
		{"brackets in a quoted header part", "[\"]]]]\" . '[[[[' ]\nc = 1\n", 0},
		{"arrays at limit", `a = [[1]]`, 0},
		{"arrays over", "a =\t[\t[\t[1]]]", 1},
		{"siblings do not add up", `a = [[1], [2], [], [3,],]`, 0},
		{"inline table", `a = {b = 1}`, 0},
		{"inline tables over", `a = {b = {c = 1}}`, 1},
		{"dotted key in inline table", `a = {b.c = 1}`, 1},
		{"empty inline tables", `a = [{}, {}]`, 0},
		{"next key in inline table", `a = {b = 1, c = 2, d.e = 3}`, 1},
		{"depth ends with the value", "a = [[1]]\nb = [[2]]\n", 0},
		{"multi-line array", "a = [\n  1, # [[[[\n  [2],\n]\nb.c.d.e = 1\n", 5},
		{"multi-line inline table", "a = {\n  b = 1,\n  c = {d = 1},\n}\n", 3},
		{"header after a multi-line array", "a = [\n  1,\n]\n[b.c.d.e]\n", 4},
		{"comments", "# [[[[ {{{{\na = 1 # [[[[ {{{{\n  # a.b.c.d = 1\n", 0},
		{"hash in a string is no comment", `a = ["#", [[1]]]`, 1},
		{"basic string", `a = ["[[[[ {{{{", [[1]]]`, 1},
		{"escaped quote in a basic string", `a = ["\" ]]]", [[1]]]`, 1},
		{"escaped backslash ends a basic string", `a = ["\\", [[1]]]`, 1},
		{"literal string has no escapes", `a = ['\', [[1]]]`, 1},
		{"multi-line basic string", "a = [\"\"\"[[[[\n\"\" {{{{ ]]]]\"\"\", [[1]]]\n", 2},
		{"escaped quotes in a multi-line basic string", `a = ["""\""" ]]]""", [[1]]]`, 1},
		{"line-ending backslash", "a = [\"\"\"x \\\n  ]]]]\"\"\", [[1]]]\n", 2},
		{"multi-line basic string ending in quotes", `a = ["""x""""", [[1]]]`, 1},
		{"multi-line literal string", "a = ['''[[[[\n'' {{{{ \\''', [[1]]]\n", 2},
		{"multi-line literal string ending in quotes", `a = ['''x''''', [[1]]]`, 1},
		{"CRLF line ends", "a = 1\r\nb.c.d.e = 1\r\n", 2},
		{"date-time with a space", `a = [1979-05-27 07:32:00Z, [[1]]]`, 1},
		{"unterminated string", "a = \"[[[[\nb = [[[1]]]\n", 2},
		{"unterminated array", `a = [[[`, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.doc)
			got := 0
			if off := nestingOverflow(data, limit); off >= 0 {
				got = 1 + bytes.Count(data[:off], []byte("\n"))
			}
			if got != tc.line {
				t.Errorf("overflow at line %d, want %d (0: none)", got, tc.line)
			}
		})
	}
}

func TestTooDeepRefused(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
	}{
		{"100000 arrays", []byte("x = " + strings.Repeat("[", 100000))},
		{"64 KB of inline tables", deepDoc("inline", 64<<10)},
		{"64 KB of arrays", deepDoc("array", 64<<10)},
		{"64 KB dotted key", deepDoc("dotted", 64<<10)},
		{"64 KB table header", deepDoc("header", 64<<10)},
		{"33 levels", []byte("[a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t]\nx = [[[[[[{y = {z = {w = 1}}}]]]]]]\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.doc, "deep.toml")
			if err == nil || !strings.HasPrefix(err.Error(), "deep.toml:") || !strings.Contains(err.Error(), "nested more than 32 levels deep") {
				t.Fatalf("got %v", err)
			}
		})
	}
	// One level less is within the limit: the decoder gets it (and refuses its unknown keys).
	_, err := Load([]byte("[a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t]\nx = [[[[[{y = {z = {w = 1}}}]]]]]\n"), "deep.toml")
	if err == nil || strings.Contains(err.Error(), "nested") {
		t.Errorf("32 levels: %v", err)
	}
	// Brackets where a header starts are no nesting but a broken header: the decoder's to refuse.
	if _, err := Load([]byte(strings.Repeat("[", 100000)), "deep.toml"); err == nil {
		t.Fatal("100000 '[' loaded")
	}
}

// TestDeepestSchema pins MaxNesting's justification: the schema spelled all inline is 7 deep.
func TestDeepestSchema(t *testing.T) {
	doc := []byte(`rules = [{name = "inline", kind = "self_generated_traffic", group_by = ["service"], ` +
		`inbound = 'sum by (service) (rate(requests[2m]))', labels = {team = "a"}, ` +
		`signals = [{name = "s", query = 'sum by (service) (rate(work[2m]))', relation = "proportional"}]}]` + "\n")
	if nestingOverflow(doc, 6) < 0 || nestingOverflow(doc, 7) >= 0 {
		t.Errorf("want the inline schema exactly 7 deep")
	}
	cfg, err := Load(doc, "inline.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rules) != 1 || len(cfg.Rules[0].Signals) != 1 {
		t.Errorf("decoded %+v", cfg.Rules)
	}
}

func TestBracketsInStringsLoad(t *testing.T) {
	cfg, err := LoadFile(filepath.Join("testdata", "good-brackets-in-strings.toml"))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Rules[0].Labels
	if !strings.HasPrefix(l["basic"], "[[[[") || !strings.HasPrefix(l["multi_literal"], "[[[[") || l[strings.Repeat("[", 40)] != "quoted key" {
		t.Errorf("labels not decoded: %q", l)
	}
}

func TestTooLarge(t *testing.T) {
	big := append([]byte("#"), bytes.Repeat([]byte("x"), MaxFileSize)...) // one byte over
	const want = "over the 1048576-byte (1 MiB) limit for a configuration file"

	if _, err := Load(big, "big.toml"); err == nil || err.Error() != "big.toml: file is 1048577 bytes, "+want {
		t.Errorf("Load: %v", err)
	}

	path := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err == nil || err.Error() != path+": file is 1048577 bytes, "+want {
		t.Errorf("LoadFile: %v", err)
	}

	// Stat gives no size for a device or a pipe: the read stops one byte past the limit.
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := LoadFile("/dev/zero"); err == nil || err.Error() != "/dev/zero: file is "+want {
			t.Errorf("LoadFile(/dev/zero): %v", err)
		}
	}

	// At the limit is fine.
	if err := os.WriteFile(path, big[:MaxFileSize], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err != nil {
		t.Errorf("file of MaxFileSize bytes: %v", err)
	}
}

// FuzzNesting checks the scanner against the decoder on whatever the decoder accepts: depth as
// the scanner counts it and the depth of the decoded tree stay within a factor of two of each
// other (the scanner counts inline tables and their keys both, the tree counts arrays of tables
// and their keys both). A bracket miscounted in a string, or nesting missed after one, breaks it.
func FuzzNesting(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.toml"))
	seeds = append(seeds, filepath.Join("..", "rules.toml"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("a = [[1], {b = {c = [2]}}]\n[x.y]\nz.w = '''[[['''\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const most = 40 // beyond the seeds' depth; deeper documents only slow the fuzzer
		scanned := 0
		for scanned <= most && nestingOverflow(data, scanned) >= 0 {
			scanned++
		}
		var doc map[string]any
		if scanned > most || len(data) > 4096 {
			return
		}
		if _, err := toml.Decode(string(data), &doc); err != nil {
			return
		}
		decoded := treeDepth(doc)
		if decoded > 2*scanned+1 || scanned > 2*decoded {
			t.Errorf("scanned depth %d, decoded depth %d", scanned, decoded)
		}
	})
}

// treeDepth counts the tables and arrays on the longest path down v, v included: the root
// table stands for the key of the scalar at the end of the path, which it does not count.
func treeDepth(v any) int {
	deepest := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			deepest = max(deepest, treeDepth(e))
		}
	case []map[string]any:
		for _, e := range v {
			deepest = max(deepest, treeDepth(e))
		}
	case []any:
		for _, e := range v {
			deepest = max(deepest, treeDepth(e))
		}
	default:
		return 0
	}
	return deepest + 1
}
