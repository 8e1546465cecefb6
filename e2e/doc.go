// Package e2e is the real-stack proof of emergentd: its tests start Redis, redis_exporter,
// Prometheus, Alertmanager, VictoriaMetrics and the emergent-lab service as real processes on
// 127.0.0.1 (ports they pick, data in temporary directories, stopped by the PIDs they started),
// produce the seeds' incidents for real, and check what reaches Alertmanager and Slack.
//
// With -update-quickstart (go test -count=1 -v -run TestRealStack ./e2e -update-quickstart),
// a run whose scenarios all passed also records them from its Prometheus, while the stack is
// still up, into cmd/emergentd/quickstart.rec.json.gz: the recording `emergentd replay` runs
// when given no file.
//
// The package holds only tests. A missing component is a failure, never a skip: install them
// with scripts/test.sh, which CI runs.
package e2e
