package master

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/master/medianodes"
	"github.com/chorus-rtc/chorus/shared/config"
)

// newProvider builds the configured media node provider.
func newProvider(ctx context.Context, c *config.Config, log *slog.Logger) (medianodes.Provider, error) {
	switch c.MediaNodes.Provider {
	case medianodes.ProviderDocker:
		d := c.MediaNodes.Docker
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		p, err := medianodes.NewDocker(ctx, medianodes.DockerConfig{
			Host: d.Host, Image: d.Image, Network: d.Network, Project: d.Project, ClusterID: c.ClusterID,
			PublishIP: d.PublishIP, PublicIPs: d.PublicIPs, UDPPortMin: d.UDPPortMin, UDPPortMax: d.UDPPortMax,
			ICETCP: c.MediaNodes.ICETCP, CPUs: d.CPUs, MemoryMB: d.MemoryMB, PidsLimit: d.PidsLimit,
			// Launched nodes listen on 0.0.0.0 in their containers; their
			// ports are published on publish_ip only.
			Env: append(mediaNodeEnv(c, nil), "CHORUS_PUBLISHED_IP="+d.PublishIP),
		})
		if err != nil {
			return nil, err
		}
		r := p.Config()
		log.Info("media nodes are launched as containers", "image", r.Image, "network", r.Network, "project", r.Project,
			"udp_ports", fmt.Sprintf("%d-%d", r.UDPPortMin, r.UDPPortMax), "ice_tcp", r.ICETCP)
		return p, nil
	case medianodes.ProviderSwarm:
		d := c.MediaNodes.Docker
		env, files, err := swarmMediaNodeEnv(c, os.Environ())
		if err != nil {
			return nil, err
		}
		var networks []string
		if d.Network != "" {
			networks = []string{d.Network}
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		p, err := medianodes.NewSwarm(ctx, medianodes.SwarmConfig{
			Host: d.Host, Image: d.Image, Networks: networks, ClusterID: c.ClusterID,
			NodeLabel: c.MediaNodes.Swarm.NodeLabel, PublicIPFile: c.MediaNodes.Swarm.PublicIPFile,
			UDPPortMin: d.UDPPortMin, UDPPortMax: d.UDPPortMax, ICETCP: c.MediaNodes.ICETCP,
			CPUs: d.CPUs, MemoryMB: d.MemoryMB, PidsLimit: d.PidsLimit,
			Env: env, SecretFiles: files,
		})
		if err != nil {
			return nil, err
		}
		r := p.Config()
		log.Info("media nodes are launched as Swarm services", "image", r.Image, "networks", r.Networks, "stack", r.Stack,
			"node_label", r.NodeLabel, "udp_ports", fmt.Sprintf("%d-%d", r.UDPPortMin, r.UDPPortMax), "ice_tcp", r.ICETCP)
		return p, nil
	case medianodes.ProviderProcess:
		p := c.MediaNodes.Process
		bin := p.Binary
		if bin == "" {
			exe, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("process provider: locate the chorus binary: %w", err)
			}
			bin = exe
		}
		log.Info("media nodes are launched as local processes", "binary", bin, "bind_ip", p.BindIP, "ice_tcp", c.MediaNodes.ICETCP)
		env := append(mediaNodeEnv(c, os.Environ()), "CHORUS_MEDIA_PUBLIC_IPS="+strings.Join(p.PublicIPs, ","))
		return medianodes.NewProcess(medianodes.ProcessConfig{
			Binary: bin, BindIP: p.BindIP, ICETCP: c.MediaNodes.ICETCP, Env: env, LogDir: p.LogDir,
		}), nil
	case medianodes.ProviderStatic:
		return medianodes.Static{}, nil
	}
	return nil, fmt.Errorf("media_nodes.provider %q is not supported", c.MediaNodes.Provider)
}

// mediaNodeEnv is the environment of the media nodes a master launches: its
// own (base) without the OpenVidu secret, which media nodes never need, plus
// what a node needs to join this cluster (Redis with its credentials and
// TLS settings, cluster id and cluster secret, logging), passed in the environment rather than on the command line
// so that secrets stay out of process listings.
func mediaNodeEnv(c *config.Config, base []string) []string {
	r := c.Redis
	env := make([]string, 0, len(base)+16)
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if name != "OPENVIDU_SECRET" && name != "CHORUS_SECRET" {
			env = append(env, kv)
		}
	}
	return append(env,
		"CHORUS_CLUSTER_ID="+c.ClusterID,
		"CHORUS_CLUSTER_SECRET="+c.ClusterSecret,
		"CHORUS_REDIS_ADDRS="+strings.Join(r.Addrs, ","),
		"CHORUS_REDIS_USERNAME="+r.Username,
		"CHORUS_REDIS_PASSWORD="+r.Password,
		"CHORUS_REDIS_DB="+strconv.Itoa(r.DB),
		"CHORUS_REDIS_SENTINEL_MASTER_NAME="+r.SentinelMasterName,
		"CHORUS_REDIS_SENTINEL_USERNAME="+r.SentinelUsername,
		"CHORUS_REDIS_SENTINEL_PASSWORD="+r.SentinelPassword,
		"CHORUS_REDIS_TIMEOUT="+r.Timeout.String(),
		// TLS files are paths: a launched container finds them only where
		// its image has them (the docker provider mounts nothing).
		"CHORUS_REDIS_TLS_ENABLED="+strconv.FormatBool(r.TLS.Enabled),
		"CHORUS_REDIS_TLS_CA_FILE="+r.TLS.CAFile,
		"CHORUS_REDIS_TLS_CERT_FILE="+r.TLS.CertFile,
		"CHORUS_REDIS_TLS_KEY_FILE="+r.TLS.KeyFile,
		"CHORUS_REDIS_TLS_SERVER_NAME="+r.TLS.ServerName,
		"CHORUS_REDIS_TLS_INSECURE_SKIP_VERIFY="+strconv.FormatBool(r.TLS.InsecureSkipVerify),
		"CHORUS_LOG_LEVEL="+c.Log.Level,
		"CHORUS_LOG_FORMAT="+c.Log.Format,
	)
}

// swarmSecretVars are the variables of mediaNodeEnv that hold secrets.
var swarmSecretVars = []string{"CHORUS_CLUSTER_SECRET", "CHORUS_REDIS_PASSWORD", "CHORUS_REDIS_SENTINEL_PASSWORD"}

// swarmMediaNodeEnv is mediaNodeEnv for Swarm services, whose environment
// anyone reaching a manager reads (docker service inspect): each secret
// goes as its *_FILE variable, naming the file the master itself read it
// from (its environment, osEnv, says which), and that file is returned to
// be mounted from the same Swarm secret. A secret the master got any other
// way is an error: it would have to be written into the service's spec.
func swarmMediaNodeEnv(c *config.Config, osEnv []string) (env, secretFiles []string, err error) {
	fileOf := map[string]string{}
	for _, kv := range osEnv {
		if name, val, ok := strings.Cut(kv, "="); ok && strings.HasSuffix(name, "_FILE") {
			fileOf[strings.TrimSuffix(name, "_FILE")] = val
		}
	}
	for _, kv := range mediaNodeEnv(c, nil) {
		name, val, _ := strings.Cut(kv, "=")
		if !slices.Contains(swarmSecretVars, name) || val == "" {
			env = append(env, kv)
			continue
		}
		file, ok := fileOf[name]
		if !ok {
			return nil, nil, fmt.Errorf("swarm provider: %s must come from a Swarm secret (%s_FILE=/run/secrets/...), so that launched nodes get it as one", name, name)
		}
		env = append(env, name+"_FILE="+file)
		secretFiles = append(secretFiles, file)
	}
	return env, secretFiles, nil
}
