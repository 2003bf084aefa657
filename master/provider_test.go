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

// TestSwarmNodesGetSecretsAsFiles: for Swarm services every secret goes as
// the *_FILE variable the master itself read it through, never as a value
// (a service's environment is readable by anyone reaching a manager); a
// secret the master got otherwise is an error; an empty one is not a secret.
func TestSwarmNodesGetSecretsAsFiles(t *testing.T) {
	c := &config.Config{ClusterID: "c", Secret: "REST_SECRET_0123456789", ClusterSecret: "CLUSTER_SECRET_0123456789"}
	c.Redis.Password = "REDIS_PASSWORD_0123456789"
	osEnv := []string{"OPENVIDU_SECRET_FILE=/run/secrets/openvidu_secret", "CHORUS_CLUSTER_SECRET_FILE=/run/secrets/cluster_secret",
		"CHORUS_REDIS_PASSWORD_FILE=/run/secrets/redis_password"}
	env, files, err := swarmMediaNodeEnv(c, osEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(files, []string{"/run/secrets/cluster_secret", "/run/secrets/redis_password"}) {
		t.Errorf("secret files %v", files)
	}
	for _, want := range []string{"CHORUS_CLUSTER_SECRET_FILE=/run/secrets/cluster_secret", "CHORUS_REDIS_PASSWORD_FILE=/run/secrets/redis_password",
		"CHORUS_REDIS_SENTINEL_PASSWORD=", "CHORUS_CLUSTER_ID=c"} {
		if !slices.Contains(env, want) {
			t.Errorf("environment lacks %s: %v", want, env)
		}
	}
	for _, kv := range env {
		if strings.Contains(kv, "_0123456789") || strings.Contains(kv, "openvidu_secret") {
			t.Errorf("a secret's value or the OpenVidu secret in a Swarm service's environment: %s", kv)
		}
	}
	if _, _, err := swarmMediaNodeEnv(c, osEnv[:2]); err == nil || !strings.Contains(err.Error(), "CHORUS_REDIS_PASSWORD must come from a Swarm secret") {
		t.Errorf("a Redis password from the environment: %v", err)
	}
}
