package alerts

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQueueDropPolicy(t *testing.T) {
	it := func(key string, prio priority) *item {
		return &item{key: key, alert: &Alert{}, resolved: prio == prioResolve || prio == prioResolvedResend, prio: prio}
	}
	tests := []struct {
		name        string
		push        []*item
		wantPending []string
		wantDropped []string
		wantPrio    map[string]priority
	}{
		{
			name:        "oldest firing resend goes first",
			push:        []*item{it("a", prioFiring), it("b", prioFiringResend), it("c", prioFiringResend), it("d", prioFiring)},
			wantPending: []string{"a", "c", "d"},
			wantDropped: []string{"b"},
		},
		{
			name:        "a resend does not push out a page",
			push:        []*item{it("a", prioFiring), it("b", prioFiring), it("c", prioFiring), it("d", prioFiringResend)},
			wantPending: []string{"a", "b", "c"},
			wantDropped: []string{"d"},
		},
		{
			name:        "pages go before resolved resends",
			push:        []*item{it("a", prioResolvedResend), it("b", prioFiring), it("c", prioFiring), it("d", prioFiring)},
			wantPending: []string{"b", "c", "d"},
			wantDropped: []string{"a"},
		},
		{
			name:        "oldest page goes when only pages are pending",
			push:        []*item{it("a", prioFiring), it("b", prioFiring), it("c", prioFiring), it("d", prioFiring)},
			wantPending: []string{"b", "c", "d"},
			wantDropped: []string{"a"},
		},
		{
			name:        "resolves take no room from pages",
			push:        []*item{it("a", prioFiring), it("b", prioFiring), it("c", prioResolve), it("d", prioFiring)},
			wantPending: []string{"a", "b", "c", "d"},
		},
		{
			name:        "resolves are never dropped and never cost a page",
			push:        []*item{it("a", prioResolve), it("b", prioResolve), it("c", prioResolve), it("d", prioResolve), it("e", prioFiring)},
			wantPending: []string{"a", "b", "c", "d", "e"},
		},
		{
			name:        "a page pushes out resolved resends, never a resolve",
			push:        []*item{it("a", prioResolve), it("b", prioResolvedResend), it("c", prioResolvedResend), it("d", prioResolvedResend), it("e", prioFiring)},
			wantPending: []string{"a", "c", "d", "e"},
			wantDropped: []string{"b"},
		},
		{
			name:        "a newer item replaces a pending one with the same key",
			push:        []*item{it("a", prioFiring), it("b", prioFiring), it("a", prioFiringResend), it("b", prioResolve)},
			wantPending: []string{"a", "b"},
			wantPrio:    map[string]priority{"a": prioFiring, "b": prioResolve},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			length := prometheus.NewGauge(prometheus.GaugeOpts{Name: "len"})
			q := newQueue(3, length)
			var dropped []string
			for _, it := range tc.push {
				for _, d := range q.push(it) {
					dropped = append(dropped, d.key)
				}
			}
			pending := q.takeAll()
			var keys []string
			for _, p := range pending {
				keys = append(keys, p.key)
				if w, ok := tc.wantPrio[p.key]; ok && p.prio != w {
					t.Errorf("%s: priority %d, want %d", p.key, p.prio, w)
				}
			}
			if !slices.Equal(keys, tc.wantPending) || !slices.Equal(dropped, tc.wantDropped) {
				t.Errorf("pending %v dropped %v; want %v, %v", keys, dropped, tc.wantPending, tc.wantDropped)
			}
		})
	}
}

func TestQueueTake(t *testing.T) {
	q := newQueue(10, prometheus.NewGauge(prometheus.GaugeOpts{Name: "len"}))
	q.push(&item{key: "a"}, &item{key: "b"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, ok := q.take(ctx, 1); !ok || len(got) != 1 || got[0].key != "a" {
		t.Fatalf("take(1) = %v, %v", got, ok)
	}
	q.close()
	if got := q.push(&item{key: "c"}); len(got) != 1 {
		t.Errorf("push after close kept the item")
	}
	if got, ok := q.take(ctx, 0); !ok || len(got) != 1 || got[0].key != "b" {
		t.Fatalf("closed queue still hands out what is pending: got %v, %v", got, ok)
	}
	if _, ok := q.take(ctx, 0); ok {
		t.Fatal("take on a closed, empty queue reported items")
	}
}

func TestMergeItems(t *testing.T) {
	older := []*item{{key: "a", prio: 1}, {key: "b", prio: 1}}
	newer := []*item{{key: "b", prio: 2}, {key: "c", prio: 2}}
	var got []string
	for _, it := range mergeItems(older, newer) {
		got = append(got, it.key+string(rune('0'+it.prio)))
	}
	if want := []string{"a1", "b2", "c2"}; !slices.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
}
