package metrics

import (
	"os/exec"
	"testing"
)

// TestAlertRules runs the alerting rules' unit tests
// (configs/prometheus/alerts_test.yml) and checks the rules and the
// example Prometheus configuration with Prometheus' own promtool (Debian's
// prometheus package: make deps installs it).
func TestAlertRules(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (make deps does)")
	}
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "--syntax-only", "prometheus.yml"},
	} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "../../configs/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
