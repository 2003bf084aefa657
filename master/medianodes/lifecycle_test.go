package medianodes

import "testing"

// TestLifecycle checks every pair of statuses against OpenVidu Pro's
// transition table (scalability page, "Media Node statuses").
func TestLifecycle(t *testing.T) {
	allowed := map[string][]string{
		"":          {Launching},
		Launching:   {Running, Canceled, Failed},
		Canceled:    {Launching, Terminating},
		Running:     {WaitingIdle, Terminating},
		WaitingIdle: {Running, Terminating},
		Terminating: {Terminated},
		Failed:      {},
		Terminated:  {},
	}
	for from, tos := range allowed {
		want := map[string]bool{}
		for _, to := range tos {
			want[to] = true
		}
		for _, to := range append(Statuses(), "", "bogus") {
			if got := Allowed(from, to); got != want[to] {
				t.Errorf("Allowed(%q, %q) = %v, want %v", from, to, got, want[to])
			}
		}
	}
	for _, s := range Statuses() {
		if !Valid(s) {
			t.Errorf("%q not valid", s)
		}
	}
	for _, s := range []string{"", "RUNNING", "waiting-idle", "bogus"} {
		if Valid(s) {
			t.Errorf("%q valid", s)
		}
	}
}
