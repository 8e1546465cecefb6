package config

import (
	"regexp"
	"strconv"
	"strings"
)

// lineIndex maps key paths such as "rules[1].signals[0].query" to the line they are written on.
// BurntSushi/toml keeps key positions private, so semantic errors would otherwise have no line.
type lineIndex struct {
	byPath map[string]int
	// byPlainPath maps paths without array indexes ("rules.signals.query") to their first line,
	// for keys toml reports as undecoded (it drops the indexes).
	byPlainPath map[string]int
}

var (
	arrayHeader = regexp.MustCompile(`^\[\[\s*([^\]]+?)\s*\]\]`)
	tableHeader = regexp.MustCompile(`^\[\s*([^\]]+?)\s*\]`)
	keyLine     = regexp.MustCompile(`^("[^"]*"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=`)
	indexSuffix = regexp.MustCompile(`\[\d+\]`)
)

func indexLines(data []byte) lineIndex {
	idx := lineIndex{byPath: map[string]int{}, byPlainPath: map[string]int{}}
	counts := map[string]int{} // array path (with parent indexes) -> elements seen
	table := ""
	inMultiline := ""
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		lineNo := i + 1
		if inMultiline != "" {
			if strings.Count(line, inMultiline)%2 == 1 {
				inMultiline = ""
			}
			continue
		}
		switch {
		case arrayHeader.MatchString(line):
			name := arrayHeader.FindStringSubmatch(line)[1]
			parent := resolveParent(table, name)
			n := counts[parent]
			counts[parent] = n + 1
			table = parent + "[" + strconv.Itoa(n) + "]"
			idx.add(table, lineNo)
		case tableHeader.MatchString(line):
			name := tableHeader.FindStringSubmatch(line)[1]
			table = resolveParent(table, name)
			idx.add(table, lineNo)
		case keyLine.MatchString(line):
			key := unquote(keyLine.FindStringSubmatch(line)[1])
			path := key
			if table != "" {
				path = table + "." + key
			}
			idx.add(path, lineNo)
			value := line[strings.Index(line, "=")+1:]
			for _, q := range []string{`"""`, `'''`} {
				if strings.Count(value, q)%2 == 1 {
					inMultiline = q
				}
			}
		}
	}
	return idx
}

// resolveParent turns a header name like "rules.signals" into the indexed path of the current
// element of each parent array ("rules[2].signals").
func resolveParent(current, name string) string {
	parts := strings.Split(name, ".")
	path := ""
	for i, p := range parts {
		p = unquote(strings.TrimSpace(p))
		if path != "" {
			path += "."
		}
		path += p
		if i == len(parts)-1 {
			break
		}
		// If the current table sits inside this prefix's array element, keep its index.
		if strings.HasPrefix(current, path+"[") {
			rest := current[len(path):]
			path += rest[:strings.Index(rest, "]")+1]
		}
	}
	return path
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

func (idx lineIndex) add(path string, line int) {
	if _, ok := idx.byPath[path]; !ok {
		idx.byPath[path] = line
	}
	plain := indexSuffix.ReplaceAllString(path, "")
	if _, ok := idx.byPlainPath[plain]; !ok {
		idx.byPlainPath[plain] = line
	}
}

// line returns the line of path, falling back to its closest written parent, or 0.
func (idx lineIndex) line(path string) int {
	for path != "" {
		if l, ok := idx.byPath[path]; ok {
			return l
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			return 0
		}
		path = path[:cut]
	}
	return 0
}
