package devcluster

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestExposedDevClusterNeedsARealSecret: `chorus dev --listen-host 0.0.0.0`
// with the development secret stops before starting anything, saying how
// to pass one.
func TestExposedDevClusterNeedsARealSecret(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), Config{
		Binary: "/nonexistent/chorus", Port: 1, ListenHost: "0.0.0.0", Secret: "MY_SECRET",
		Masters: 1, MediaNodes: 1, MediaIP: "127.0.0.1", ClusterID: "t",
		Output: &out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		t.Fatal("started")
	}
	for _, want := range []string{"--secret", "MY_SECRET", "--listen-host 0.0.0.0", "openssl rand -hex 24"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if out.Len() != 0 {
		t.Errorf("something started: %s", out.String())
	}
}

// TestSecretsStayOffCommandLines: the processes chorus dev starts get every
// secret in their environment, never on their command line (which any
// local user reads in ps): masters and the proxy the OpenVidu secret, media
// nodes never. Each run stops at the first process, which exits at once
// (/bin/true), so three runs reach a master, a media node and the proxy.
func TestSecretsStayOffCommandLines(t *testing.T) {
	const secret, clusterSecret = "OPENVIDU_SECRET_FOR_TEST", "CLUSTER_SECRET_FOR_TEST"
	for _, tc := range []struct {
		role           string
		masters, media int
		wantRESTSecret bool
	}{
		{"master", 1, 0, true},
		{"media", 0, 1, false},
		{"proxy", 0, 0, true},
	} {
		r := &runner{cfg: Config{
			Binary: "/bin/true", Port: 1, ListenHost: "127.0.0.1", Secret: secret, ClusterSecret: clusterSecret, TurnSecret: "TURN_SECRET_FOR_TEST",
			Masters: tc.masters, MediaNodes: tc.media, MediaIP: "127.0.0.1", ClusterID: "t", RedisAddr: "127.0.0.1:1",
			Env:    []string{"PATH=/usr/bin:/bin", "OPENVIDU_SECRET=FROM_THE_CALLERS_ENV"},
			Output: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if _, err := r.start(context.Background()); err == nil {
			t.Fatalf("%s: /bin/true made a cluster", tc.role)
		}
		r.stopAll()
		r.mu.Lock()
		procs := append([]*process(nil), r.procs...)
		r.mu.Unlock()
		if len(procs) == 0 || procs[len(procs)-1].node.Role != tc.role {
			t.Fatalf("%s: started %d processes, the last not a %s", tc.role, len(procs), tc.role)
		}
		cmd := procs[len(procs)-1].cmd
		for _, arg := range cmd.Args {
			if strings.Contains(arg, "SECRET") {
				t.Errorf("%s: a secret on the command line: %q", tc.role, cmd.Args)
			}
		}
		env := strings.Join(cmd.Env, "\n")
		if !strings.Contains(env, "CHORUS_CLUSTER_SECRET="+clusterSecret) {
			t.Errorf("%s: no cluster secret in the environment", tc.role)
		}
		if got := strings.Contains(env, secret); got != tc.wantRESTSecret {
			t.Errorf("%s: OpenVidu secret in the environment: %v, want %v", tc.role, got, tc.wantRESTSecret)
		}
		if strings.Contains(env, "FROM_THE_CALLERS_ENV") {
			t.Errorf("%s: the caller's OPENVIDU_SECRET was passed on", tc.role)
		}
	}
}

// TestPortsArePromisedOnce: a port probed free is never handed out twice,
// nor is the proxy's --port, which is promised before the proxy binds it
// (CI saw a media node take the proxy's port for ICE-TCP: the kernel gave
// the closed probe port out again).
func TestPortsArePromisedOnce(t *testing.T) {
	r := &runner{promised: map[int]bool{4443: true}}
	offers := []int{4443, 5000, 5000, 4443, 5001}
	probe := func() (int, error) {
		p := offers[0]
		offers = offers[1:]
		return p, nil
	}
	for _, want := range []int{5000, 5001} {
		got, err := r.promise(probe)
		if err != nil || got != want {
			t.Fatalf("promise = %d, %v; want %d", got, err, want)
		}
	}
	stuck := func() (int, error) { return 4443, nil }
	if got, err := r.promise(stuck); err == nil {
		t.Fatalf("promise gave %d from a probe that only offers a promised port", got)
	}
	for range 50 {
		p, err := r.freeTCPPortOn("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		q, err := r.freeUDPPort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if p == 4443 || q == 4443 {
			t.Fatal("the proxy's port was handed out")
		}
	}
	if len(r.promised) != 103 {
		t.Fatalf("%d ports promised, want 103 distinct ones", len(r.promised))
	}
}
