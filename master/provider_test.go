package master

import (
	"slices"
	"strings"
	"testing"

	"github.com/chorus-rtc/chorus/shared/config"
)

// TestLaunchedMediaNodesGetTheClusterSecretOnly: the environment of the
// media nodes a master launches carries the cluster secret and never the
// OpenVidu secret, even when the master's own environment has it.
func TestLaunchedMediaNodesGetTheClusterSecretOnly(t *testing.T) {
	c := &config.Config{ClusterID: "c", Secret: "REST_SECRET_0123456789", ClusterSecret: "CLUSTER_SECRET_0123456789"}
	env := mediaNodeEnv(c, []string{"PATH=/bin", "OPENVIDU_SECRET=REST_SECRET_0123456789", "CHORUS_SECRET=REST_SECRET_0123456789"})
	if !slices.Contains(env, "CHORUS_CLUSTER_SECRET=CLUSTER_SECRET_0123456789") || !slices.Contains(env, "PATH=/bin") {
		t.Errorf("environment %v", env)
	}
	for _, kv := range env {
		if strings.Contains(kv, "REST_SECRET") {
			t.Errorf("a launched media node gets the OpenVidu secret: %s", kv)
		}
	}
}
