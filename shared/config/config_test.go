package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func load(t *testing.T, role Role, env []string, args ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs, role)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, role, env)
}

func TestPrecedenceAndOpenViduNames(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "chorus.yaml")
	yaml := "secret: FROM_FILE\nmaster:\n  listen: 127.0.0.1:7001\n  reconnect_grace: 20s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		env   []string
		args  []string
		check func(t *testing.T, c *Config)
	}{
		{"defaults", nil, nil, func(t *testing.T, c *Config) {
			if c.ClusterID != "chorus" || c.Master.ReconnectGrace != 12*time.Second || c.Master.PublicURL != "ws://localhost:4443" {
				t.Errorf("%+v", c.Master)
			}
		}},
		{"file", nil, []string{"--config", file}, func(t *testing.T, c *Config) {
			if c.Secret != "FROM_FILE" || c.Master.Listen != "127.0.0.1:7001" || c.Master.InternalURL != "http://127.0.0.1:7001" || c.Master.ReconnectGrace != 20*time.Second {
				t.Errorf("%+v", c)
			}
		}},
		{"OpenVidu variables over the file", []string{"OPENVIDU_SECRET=FROM_ENV", "OPENVIDU_SESSIONS_GARBAGE_INTERVAL=30"}, []string{"--config", file}, func(t *testing.T, c *Config) {
			if c.Secret != "FROM_ENV" || c.Master.SessionsGarbageInterval != 30*time.Second {
				t.Errorf("secret %q, interval %s", c.Secret, c.Master.SessionsGarbageInterval)
			}
		}},
		{"CHORUS_ before OPENVIDU_", []string{"OPENVIDU_SECRET=OV", "CHORUS_SECRET=CH"}, nil, func(t *testing.T, c *Config) {
			if c.Secret != "CH" {
				t.Errorf("secret %q", c.Secret)
			}
		}},
		{"flags over everything", []string{"CHORUS_SECRET=ENV"}, []string{"--config", file, "--secret", "FLAG"}, func(t *testing.T, c *Config) {
			if c.Secret != "FLAG" {
				t.Errorf("secret %q", c.Secret)
			}
		}},
		{"public URL from the OpenVidu domain", []string{"OPENVIDU_DOMAIN_OR_PUBLIC_IP=ov.example.org", "HTTPS_PORT=4443"}, nil, func(t *testing.T, c *Config) {
			if c.Master.PublicURL != "wss://ov.example.org:4443" {
				t.Errorf("public URL %q", c.Master.PublicURL)
			}
		}},
		{"OPENVIDU_PUBLICURL is https", []string{"OPENVIDU_PUBLICURL=https://ov.example.org/"}, nil, func(t *testing.T, c *Config) {
			if c.Master.PublicURL != "wss://ov.example.org" {
				t.Errorf("public URL %q", c.Master.PublicURL)
			}
		}},
		{"lists from the environment", []string{"CHORUS_REDIS_ADDRS=10.0.0.1:6379,10.0.0.2:6379"}, nil, func(t *testing.T, c *Config) {
			if len(c.Redis.Addrs) != 2 || c.Redis.Addrs[1] != "10.0.0.2:6379" {
				t.Errorf("addrs %v", c.Redis.Addrs)
			}
		}},
		{"the cluster secret is its own setting", []string{"OPENVIDU_SECRET=S"}, nil, func(t *testing.T, c *Config) {
			if c.ClusterSecret != "" {
				t.Errorf("cluster secret %q: media nodes would need the OpenVidu secret", c.ClusterSecret)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, RoleMaster, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestEnvironmentFiles(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "openvidu_secret")
	if err := os.WriteFile(secret, []byte("FROM_SECRET_FILE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	crlf := filepath.Join(dir, "redis_password")
	if err := os.WriteFile(crlf, []byte("pw\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     []string
		secret  string
		redisPW string
		wantErr string
	}{
		{"OpenVidu's name", []string{"OPENVIDU_SECRET_FILE=" + secret}, "FROM_SECRET_FILE", "", ""},
		{"Chorus's name, one trailing CRLF trimmed", []string{"CHORUS_REDIS_PASSWORD_FILE=" + crlf}, "", "pw", ""},
		{"CHORUS_ from a file before OPENVIDU_", []string{"OPENVIDU_SECRET=OV", "CHORUS_SECRET_FILE=" + secret}, "FROM_SECRET_FILE", "", ""},
		{"both forms of one name", []string{"OPENVIDU_SECRET=OV", "OPENVIDU_SECRET_FILE=" + secret}, "", "", "both OPENVIDU_SECRET and OPENVIDU_SECRET_FILE"},
		{"a missing file", []string{"CHORUS_CLUSTER_SECRET_FILE=" + filepath.Join(dir, "nope")}, "", "", "CHORUS_CLUSTER_SECRET_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, RoleMaster, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Secret != tt.secret || c.Redis.Password != tt.redisPW {
				t.Errorf("secret %q, Redis password %q; want %q, %q", c.Secret, c.Redis.Password, tt.secret, tt.redisPW)
			}
		})
	}
}

// TestFileFormsNameNoOtherKey guards readEnvFiles: NAME_FILE must never be
// another key's own variable (CHORUS_REDIS_TLS_CA_FILE is one).
func TestFileFormsNameNoOtherKey(t *testing.T) {
	names := map[string]string{}
	for _, k := range Keys() {
		for _, n := range k.Env {
			names[n] = k.Name
		}
	}
	for _, k := range Keys() {
		for _, n := range k.Env {
			if other, ok := names[n+"_FILE"]; ok {
				t.Errorf("%s_FILE (the file form of %s) is %s's variable", n, k.Name, other)
			}
		}
	}
}

func TestUnknownFileKeyIsAnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("master:\n  lisen: :1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := load(t, RoleMaster, nil, "--config", file); err == nil || !strings.Contains(err.Error(), "lisen") {
		t.Errorf("a misspelt key: %v", err)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	c, err := load(t, RoleMaster, []string{"CHORUS_LOG_LEVEL=loud", "CHORUS_MASTER_FORCED_VIDEO_CODEC=VP9", "CHORUS_MASTER_RECONNECT_GRACE=0s", "CHORUS_REDIS_ADDRS=nohostport"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(RoleMaster)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"secret (OPENVIDU_SECRET, CHORUS_SECRET or --secret) is empty", "cluster_secret (CHORUS_CLUSTER_SECRET", "log.level", "forced_video_codec", "reconnect_grace", "redis.addrs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if _, err := load(t, RoleMaster, []string{"CHORUS_MASTER_REQUEST_TIMEOUT=soon"}); err == nil {
		t.Error("an invalid duration was accepted")
	}
	media, _ := load(t, RoleMedia, []string{"CHORUS_MEDIA_PUBLIC_IPS=1.2.3.4,not-an-ip", "CHORUS_MEDIA_RETRANSMISSION_BUFFER=100"})
	err = media.Validate(RoleMedia)
	for _, want := range []string{"cluster_secret (CHORUS_CLUSTER_SECRET or --cluster-secret, the same on every master and media node) is empty", "not-an-ip", "power of two"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("media: missing %q in %v", want, err)
		}
	}
}

// TestRedisAuthAndTLSSettings: the Redis credentials and TLS settings come
// from the environment under their CHORUS_REDIS_* names and are checked
// together.
func TestRedisAuthAndTLSSettings(t *testing.T) {
	c, err := load(t, RoleTool, []string{"CHORUS_REDIS_USERNAME=chorus", "CHORUS_REDIS_PASSWORD=pw",
		"CHORUS_REDIS_SENTINEL_MASTER_NAME=m", "CHORUS_REDIS_SENTINEL_USERNAME=su", "CHORUS_REDIS_SENTINEL_PASSWORD=sp",
		"CHORUS_REDIS_TLS_ENABLED=true", "CHORUS_REDIS_TLS_CA_FILE=/ca.pem", "CHORUS_REDIS_TLS_CERT_FILE=/c.pem",
		"CHORUS_REDIS_TLS_KEY_FILE=/c.key", "CHORUS_REDIS_TLS_SERVER_NAME=redis.internal", "CHORUS_REDIS_TLS_INSECURE_SKIP_VERIFY=true"})
	if err != nil {
		t.Fatal(err)
	}
	want := Redis{Addrs: []string{"127.0.0.1:6379"}, Username: "chorus", Password: "pw", SentinelMasterName: "m",
		SentinelUsername: "su", SentinelPassword: "sp", Timeout: 2 * time.Second,
		TLS: RedisTLS{Enabled: true, CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/c.key", ServerName: "redis.internal", InsecureSkipVerify: true}}
	if !reflect.DeepEqual(c.Redis, want) {
		t.Errorf("redis settings\n%+v\nwant\n%+v", c.Redis, want)
	}
	if err := c.Validate(RoleTool); err != nil {
		t.Errorf("valid settings refused: %v", err)
	}

	tests := []struct {
		name string
		role Role
		env  []string
		want string
	}{
		{"certificate without key", RoleTool, []string{"CHORUS_REDIS_TLS_ENABLED=true", "CHORUS_REDIS_TLS_CERT_FILE=/c.pem"}, "go together"},
		{"TLS files without TLS", RoleTool, []string{"CHORUS_REDIS_TLS_CA_FILE=/ca.pem"}, "CHORUS_REDIS_TLS_ENABLED=true"},
		{"sentinel password without sentinel", RoleTool, []string{"CHORUS_REDIS_SENTINEL_PASSWORD=sp"}, "set redis.sentinel_master_name too"},
		{"skipping verification beyond loopback", RoleMedia, []string{"CHORUS_CLUSTER_SECRET=f3a9c1d27be84c06a5d1e9f4", "CHORUS_MEDIA_LISTEN=0.0.0.0:8888",
			"CHORUS_REDIS_TLS_ENABLED=true", "CHORUS_REDIS_TLS_INSECURE_SKIP_VERIFY=true"}, "development only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.role, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(tt.role); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestMediaTCPPort: ICE-TCP is on by default on the UDP port's number; 0
// (a port chosen by the system) and -1 (off) pass validation, from the
// environment or the flag; a number past 65535 does not.
func TestMediaTCPPort(t *testing.T) {
	env := []string{"CHORUS_CLUSTER_SECRET=S"}
	c, err := load(t, RoleMedia, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Media.TCPPort != 40000 || c.Media.TCPPort != c.Media.UDPPort {
		t.Errorf("default tcp_port %d, want 40000 (the UDP port's default)", c.Media.TCPPort)
	}
	for _, tt := range []struct {
		env  []string
		args []string
		want int
	}{
		{[]string{"CHORUS_MEDIA_TCP_PORT=0"}, nil, 0},
		{[]string{"CHORUS_MEDIA_TCP_PORT=-1"}, nil, -1},
		{[]string{"CHORUS_MEDIA_TCP_PORT=443"}, []string{"--media-tcp-port=-1"}, -1},
	} {
		c, err := load(t, RoleMedia, append(tt.env, env...), tt.args...)
		if err != nil {
			t.Fatal(err)
		}
		if c.Media.TCPPort != tt.want {
			t.Errorf("%v %v: tcp_port %d, want %d", tt.env, tt.args, c.Media.TCPPort, tt.want)
		}
		if err := c.Validate(RoleMedia); err != nil {
			t.Errorf("%v %v: %v", tt.env, tt.args, err)
		}
	}
	c, _ = load(t, RoleMedia, append([]string{"CHORUS_MEDIA_TCP_PORT=70000"}, env...))
	if err := c.Validate(RoleMedia); err == nil || !strings.Contains(err.Error(), "media.tcp_port") {
		t.Errorf("tcp_port 70000: %v", err)
	}
	m, err := load(t, RoleMaster, nil, "--media-nodes-ice-tcp=false")
	if err != nil || m.MediaNodes.ICETCP {
		t.Errorf("--media-nodes-ice-tcp=false: %v %v", m.MediaNodes.ICETCP, err)
	}
	if m, _ := load(t, RoleMaster, nil); !m.MediaNodes.ICETCP {
		t.Error("media_nodes.ice_tcp is off by default")
	}
}

// TestRecordingStorage: OpenVidu Pro's S3 variables configure the recording
// storage, checked together.
func TestRecordingStorage(t *testing.T) {
	base := []string{"CHORUS_REDIS_ADDRS=127.0.0.1:6379"}
	tests := []struct {
		name string
		env  []string
		want string // a problem Validate must list; "" none
	}{
		{"local by default", nil, ""},
		{"OpenVidu Pro's S3 variables", []string{"OPENVIDU_PRO_RECORDING_STORAGE=s3", "OPENVIDU_PRO_AWS_S3_BUCKET=rec/folder",
			"OPENVIDU_PRO_AWS_S3_SERVICE_ENDPOINT=http://127.0.0.1:9000", "OPENVIDU_PRO_AWS_S3_WITH_PATH_STYLE_ACCESS=true",
			"OPENVIDU_PRO_AWS_ACCESS_KEY=ak", "OPENVIDU_PRO_AWS_SECRET_KEY=sk", "OPENVIDU_PRO_AWS_REGION=eu-west-1",
			`OPENVIDU_PRO_AWS_S3_HEADERS={"x-amz-server-side-encryption":"AES256"}`}, ""},
		{"unknown storage", []string{"OPENVIDU_PRO_RECORDING_STORAGE=ftp"}, "recording.storage"},
		{"s3 without a bucket", []string{"OPENVIDU_PRO_RECORDING_STORAGE=s3", "OPENVIDU_PRO_AWS_S3_BUCKET=/"}, "recording.s3.bucket is empty"},
		{"a relative endpoint", []string{"OPENVIDU_PRO_RECORDING_STORAGE=s3", "OPENVIDU_PRO_AWS_S3_BUCKET=b", "OPENVIDU_PRO_AWS_S3_SERVICE_ENDPOINT=minio:9000"}, "recording.s3.endpoint"},
		{"half the credentials", []string{"OPENVIDU_PRO_RECORDING_STORAGE=s3", "OPENVIDU_PRO_AWS_S3_BUCKET=b", "OPENVIDU_PRO_AWS_ACCESS_KEY=ak"}, "go together"},
		{"headers not an object", []string{"OPENVIDU_PRO_RECORDING_STORAGE=s3", "OPENVIDU_PRO_AWS_S3_BUCKET=b", `OPENVIDU_PRO_AWS_S3_HEADERS=["a"]`}, "recording.s3.headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, RoleRecorder, append(base, tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate(RoleRecorder)
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate: %v, want a problem with %q", err, tt.want)
			}
			if tt.name == "OpenVidu Pro's S3 variables" {
				s := c.Recording.S3
				h, _ := s.HeaderMap()
				if c.Recording.Storage != "s3" || s.Bucket != "rec/folder" || s.Endpoint != "http://127.0.0.1:9000" || !s.PathStyle ||
					s.AccessKey != "ak" || s.SecretKey != "sk" || s.Region != "eu-west-1" || h["x-amz-server-side-encryption"] != "AES256" {
					t.Errorf("%+v", c.Recording)
				}
			}
		})
	}
}
