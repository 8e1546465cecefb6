package synth

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadNABInterpolatesBetweenBucketMidpoints(t *testing.T) {
	dir := t.TempDir()
	csv := "timestamp,value\n2014-04-10 00:00:00,60\n2014-04-10 00:05:00,120\n2014-04-10 00:10:00,60\n"
	windows := `{"realX/x.csv": [["2014-04-10 00:05:00.000000", "2014-04-10 00:09:00.000000"]], "other/y.csv": []}`
	if err := os.WriteFile(filepath.Join(dir, "x.csv"), []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "combined_windows.json"), []byte(windows), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := LoadNAB(dir, "x.csv")
	if err != nil {
		t.Fatal(err)
	}
	if n.Bucket != 5*time.Minute || len(n.Windows) != 1 || n.Windows[0].End.Minute() != 9 {
		t.Fatalf("bucket %s, windows %+v", n.Bucket, n.Windows)
	}
	at := func(min, sec int) time.Time { return time.Date(2014, 4, 10, 0, min, sec, 0, time.UTC) }
	for _, tc := range []struct {
		t    time.Time
		want float64
	}{
		{at(0, 0), 0.2},   // before the first midpoint: the first bucket's rate
		{at(2, 30), 0.2},  // first midpoint: 60 per 5 min
		{at(5, 0), 0.3},   // halfway to the second midpoint
		{at(7, 30), 0.4},  // second midpoint: 120 per 5 min
		{at(14, 59), 0.2}, // last bucket
		{at(15, 0), math.NaN()},
	} {
		got := n.RateAt(tc.t)
		if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9) {
			t.Errorf("RateAt(%s) = %v, want %v", tc.t.Format("15:04:05"), got, tc.want)
		}
	}
	if m := n.Median(); math.Abs(m-0.2) > 1e-9 {
		t.Errorf("median %v, want 0.2", m)
	}
}

func TestLoadNABMissing(t *testing.T) {
	_, err := LoadNAB(t.TempDir(), "nyc_taxi.csv")
	if !errors.Is(err, ErrNABMissing) {
		t.Errorf("err = %v, want ErrNABMissing", err)
	}
}

// TestLoadNABShared reads the real series next to the repository, as the benchmark does.
func TestLoadNABShared(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "data", "nab")
	for _, tc := range []struct {
		file    string
		bucket  time.Duration
		windows int
	}{
		{"nyc_taxi.csv", 30 * time.Minute, 5},
		{"elb_request_count_8c0756.csv", 5 * time.Minute, 2},
		{"Twitter_volume_AAPL.csv", 5 * time.Minute, 4},
	} {
		n, err := LoadNAB(dir, tc.file)
		if err != nil {
			t.Fatalf("%v (the benchmark reads ../shared/data/nab next to the repository)", err)
		}
		if n.Bucket != tc.bucket || len(n.Windows) != tc.windows {
			t.Errorf("%s: bucket %s, %d windows; want %s, %d", tc.file, n.Bucket, len(n.Windows), tc.bucket, tc.windows)
		}
		for _, w := range n.Windows {
			if w.Start.Before(n.Start()) || w.End.After(n.End()) {
				t.Errorf("%s: window %v outside the series", tc.file, w)
			}
		}
	}
}
