// Command emergent-fleetsim writes a fleetsim dataset (internal/fleetsim) for inspection and
// prints what it wrote.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/emergent-sh/emergent/internal/fleetsim"
)

func main() {
	seed := flag.Uint64("seed", 1, "dataset seed")
	days := flag.Int("days", 2, "days of data (≥ 2)")
	services := flag.Int("services", 24, "services to simulate")
	end := flag.String("end", "2025-01-06T00:00:00Z", "end of the data (RFC 3339)")
	out := flag.String("out", "fleetsim-out", "output directory")
	nabDir := flag.String("nab-dir", "", "NAB CSV directory (e.g. ../shared/data/nab); empty: no NAB-shaped services")
	step := flag.Duration("step", 30*time.Second, "scrape interval")
	warm := flag.Duration("warm", 0, "history before scoring (0: 24h for ≤ 3 days, else 72h)")
	flag.Parse()
	if err := run(*seed, *days, *services, *end, *out, *nabDir, *step, *warm); err != nil {
		fmt.Fprintln(os.Stderr, "emergent-fleetsim:", err)
		os.Exit(1)
	}
}

func run(seed uint64, days, services int, end, out, nabDir string, step, warm time.Duration) error {
	e, err := time.Parse(time.RFC3339, end)
	if err != nil {
		return fmt.Errorf("--end: %w", err)
	}
	t0 := time.Now()
	opts := fleetsim.Options{Seed: seed, Days: days, Services: services, End: e, NABDir: nabDir, Step: step, Warm: warm}
	if err := fleetsim.Generate(opts, out); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	raw, err := os.ReadFile(filepath.Join(out, "dataset.json"))
	if err != nil {
		return fmt.Errorf("reading dataset.json: %w", err)
	}
	var ds fleetsim.Dataset
	if err := json.Unmarshal(raw, &ds); err != nil {
		return fmt.Errorf("dataset.json: %w", err)
	}
	fmt.Printf("%s: %d services, %d files, %d samples, %d bytes in %s\n",
		out, len(ds.Services), len(ds.Files), ds.Samples, ds.Bytes, elapsed.Round(time.Millisecond))
	return nil
}
