// Package faultproxy is an HTTP proxy for fault-injection tests: it sits on 127.0.0.1 between
// emergentd and a real Prometheus and, on command, answers with errors, delays, malformed or
// truncated JSON, or partial results with warnings. It is test-only code.
package faultproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what the proxy does to the requests it forwards.
type Fault int

// Faults.
const (
	Pass      Fault = iota // forward unchanged
	Status503              // answer 503 without forwarding
	Delay                  // forward, but answer after the configured delay
	Malformed              // answer 200 with a body that is not JSON
	Truncated              // answer 200 with the first half of the real body
	Partial                // forward, and add a warning to the JSON, as a partial answer carries
	Refuse                 // close the connection without answering
)

// Proxy forwards to a target URL, applying the current fault.
type Proxy struct {
	URL    string // the proxy's own base URL
	target string
	srv    *httptest.Server
	client *http.Client

	mu    sync.Mutex
	fault Fault
	delay time.Duration

	// Requests counts every request received, Faulted those the fault changed.
	Requests, Faulted atomic.Int64
}

// New starts a proxy on 127.0.0.1 forwarding to target (e.g. http://127.0.0.1:9090).
func New(target string) *Proxy {
	p := &Proxy{target: strings.TrimRight(target, "/"), client: &http.Client{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	return p
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }

// Set changes the fault; delay applies to Delay.
func (p *Proxy) Set(f Fault, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.delay = f, delay
}

// SetTarget points the proxy at another upstream (a restarted Prometheus on a new port).
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = strings.TrimRight(target, "/")
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.Requests.Add(1)
	p.mu.Lock()
	fault, delay, target := p.fault, p.delay, p.target
	p.mu.Unlock()
	if fault != Pass {
		p.Faulted.Add(1)
	}
	switch fault {
	case Status503:
		http.Error(w, "upstream unavailable (injected)", http.StatusServiceUnavailable)
		return
	case Malformed:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `<html>502 Bad Gateway</html>`)
		return
	case Refuse:
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "", http.StatusBadGateway)
		return
	case Delay:
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}

	body, _ := io.ReadAll(r.Body)
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	switch fault {
	case Truncated:
		out = out[:len(out)/2]
	case Partial:
		var m map[string]any
		if json.Unmarshal(out, &m) == nil {
			m["warnings"] = []string{"partial response: store eu-2 unreachable (injected)"}
			out, _ = json.Marshal(m)
		}
	}
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}
