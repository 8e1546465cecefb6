package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// NullAlertmanagerConfig routes every alert to a receiver that sends nothing: Alertmanager
// still groups, deduplicates and serves alerts on its API, which is what tests read.
const NullAlertmanagerConfig = `route:
  receiver: "null"
  group_by: ["alertname"]
receivers:
  - name: "null"
`

// AlertmanagerOptions configure an Alertmanager.
type AlertmanagerOptions struct {
	// Dir holds the config, the silences/notification-log storage (Dir/data) and the log.
	// Required.
	Dir string
	// ConfigYAML is the alertmanager.yml; NullAlertmanagerConfig if empty.
	ConfigYAML string
	// Addr, if set, is where to listen (to restart it where its clients send); a free port
	// otherwise.
	Addr         string
	ExtraArgs    []string
	ReadyTimeout time.Duration
}

// StartAlertmanager starts Alertmanager (Debian: prometheus-alertmanager) with clustering off
// (its gossip port would otherwise listen on 0.0.0.0:9094) and waits for /-/ready.
func StartAlertmanager(ctx context.Context, opts AlertmanagerOptions) (*Process, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("alertmanager: Dir is required")
	}
	cfg := opts.ConfigYAML
	if cfg == "" {
		cfg = NullAlertmanagerConfig
	}
	configPath, err := writeFile(opts.Dir, "alertmanager.yml", cfg)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: writing config: %w", err)
	}
	return Start(ctx, Spec{
		Name: "alertmanager", Binary: firstOnPath("prometheus-alertmanager", "alertmanager"),
		Package: "prometheus-alertmanager", Dir: opts.Dir, Addr: opts.Addr,
		Args: func(addr string) []string {
			return append([]string{
				"--config.file=" + configPath,
				"--storage.path=" + filepath.Join(opts.Dir, "data"),
				"--web.listen-address=" + addr,
				"--cluster.listen-address=",
			}, opts.ExtraArgs...)
		},
		Ready:        HTTPReady("/-/ready"),
		ReadyTimeout: opts.ReadyTimeout,
	})
}
