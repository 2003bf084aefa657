// Package config loads the configuration of every Chorus role with viper:
// defaults, then a YAML file (--config), then environment variables (CHORUS_*
// and OpenVidu's own names, see Keys), then command-line flags. Unknown YAML
// keys are an error, and Validate lists every problem at once.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the whole configuration; each role reads its own section.
type Config struct {
	ClusterID     string    `mapstructure:"cluster_id"`
	Secret        string    `mapstructure:"secret"`
	ClusterSecret string    `mapstructure:"cluster_secret"`
	PublishedIP   string    `mapstructure:"published_ip"`
	Redis         Redis     `mapstructure:"redis"`
	HTTP          HTTP      `mapstructure:"http"`
	Log           Log       `mapstructure:"log"`
	Master        Master    `mapstructure:"master"`
	Webhook       Webhook   `mapstructure:"webhook"`
	CDR           CDR       `mapstructure:"cdr"`
	Recording     Recording `mapstructure:"recording"`
	Recorder      Recorder  `mapstructure:"recorder"`
	Events        Events    `mapstructure:"events"`
	// NetworkQuality is OpenVidu Pro's network quality API.
	NetworkQuality NetworkQuality `mapstructure:"network_quality"`
	MediaNodes     MediaNodes     `mapstructure:"media_nodes"`
	Autoscaling    Autoscaling    `mapstructure:"autoscaling"`
	Media          Media          `mapstructure:"media"`
	Proxy          Proxy          `mapstructure:"proxy"`
	Turn           Turn           `mapstructure:"turn"`
	Limits         Limits         `mapstructure:"limits"`
}

// Limits bound what one participant, or one client address, can cost the
// cluster (OpenVidu 2 has none of them; the sizes follow LiveKit's). Zero
// turns a limit off.
type Limits struct {
	// SignalDataBytes caps a signal's data plus type (sendMessage and POST
	// /openvidu/api/signal), in bytes.
	SignalDataBytes int `mapstructure:"signal_data_bytes"`
	// MetadataBytes caps a connection's metadata: joinRoom's client data
	// and the data of POST /sessions/{id}/connection, in bytes.
	MetadataBytes int `mapstructure:"metadata_bytes"`
	// OutboxBytes caps the notifications queued in Redis for one
	// participant; a participant whose outbox exceeds it is evicted.
	OutboxBytes int64 `mapstructure:"outbox_bytes"`
	// SignalsPerSecond caps the signals one connection sends (a burst of
	// one second's worth is allowed).
	SignalsPerSecond int `mapstructure:"signals_per_second"`
	// ParticipantsPerSession caps the active participants of a session.
	ParticipantsPerSession int `mapstructure:"participants_per_session"`
	// HeldRequests caps the unanswered reconnectStream and
	// prepareReceiveVideoFrom requests of one WebSocket.
	HeldRequests int `mapstructure:"held_requests"`
	// WebSocketsPerIP caps the WebSocket connections the proxy relays for
	// one client address (an IPv6 client by its /64).
	WebSocketsPerIP int `mapstructure:"websockets_per_ip"`
}

// Turn configures the embedded TURN servers (the turn role) and what masters
// hand to participants: the servers' URLs and, per connection, a TURN REST
// API credential (draft-uberti-behave-turn-rest-00, coturn's
// use-auth-secret) made with Secret.
type Turn struct {
	// URLs are the TURN servers' URLs as participants reach them
	// ("turn:host:3478?transport=udp", "turns:host:5349?transport=tcp"...);
	// empty: masters hand no TURN server (a connection's own
	// customIceServers still apply).
	URLs          []string      `mapstructure:"urls"`
	Secret        string        `mapstructure:"secret"`
	CredentialTTL time.Duration `mapstructure:"credential_ttl"`
	Realm         string        `mapstructure:"realm"`

	ListenIP string `mapstructure:"listen_ip"`
	Port     int    `mapstructure:"port"`
	TLSPort  int    `mapstructure:"tls_port"`
	TLS      TLS    `mapstructure:"tls"`

	RelayIP      string `mapstructure:"relay_ip"`
	RelayBindIP  string `mapstructure:"relay_bind_ip"`
	RelayPortMin int    `mapstructure:"relay_port_min"`
	RelayPortMax int    `mapstructure:"relay_port_max"`

	MaxAllocationsPerUser   int           `mapstructure:"max_allocations_per_user"`
	MaxBitratePerAllocation int           `mapstructure:"max_bitrate_per_allocation"`
	PeerRefreshInterval     time.Duration `mapstructure:"peer_refresh_interval"`
}

// MediaNodes is how masters manage the media nodes.
type MediaNodes struct {
	Provider string `mapstructure:"provider"`
	// ICETCP gives launched media nodes an ICE-TCP port (process, docker).
	ICETCP              bool            `mapstructure:"ice_tcp"`
	AutoAdopt           bool            `mapstructure:"auto_adopt"`
	LaunchTimeout       time.Duration   `mapstructure:"launch_timeout"`
	CrashWindow         time.Duration   `mapstructure:"crash_window"`
	ReconnectionTimeout time.Duration   `mapstructure:"reconnection_timeout"`
	CrashPolicy         string          `mapstructure:"crash_policy"`
	MaxLoad             float64         `mapstructure:"max_load"`
	HoldTimeout         time.Duration   `mapstructure:"hold_timeout"`
	NudgeDelay          time.Duration   `mapstructure:"nudge_delay"`
	NudgeCrashDelay     time.Duration   `mapstructure:"nudge_crash_delay"`
	NudgeInterval       time.Duration   `mapstructure:"nudge_interval"`
	NudgeCount          int             `mapstructure:"nudge_count"`
	Process             ProcessProvider `mapstructure:"process"`
	Docker              DockerProvider  `mapstructure:"docker"`
	Swarm               SwarmProvider   `mapstructure:"swarm"`
}

// SwarmProvider configures the swarm media node provider (which also reads
// DockerProvider's host, image, network, UDP range and limits).
type SwarmProvider struct {
	NodeLabel    string `mapstructure:"node_label"`
	PublicIPFile string `mapstructure:"public_ip_file"`
}

// DockerProvider configures the docker media node provider.
type DockerProvider struct {
	Host       string   `mapstructure:"host"`
	Image      string   `mapstructure:"image"`
	Network    string   `mapstructure:"network"`
	Project    string   `mapstructure:"project"`
	PublishIP  string   `mapstructure:"publish_ip"`
	PublicIPs  []string `mapstructure:"public_ips"`
	UDPPortMin int      `mapstructure:"udp_port_min"`
	UDPPortMax int      `mapstructure:"udp_port_max"`
	// CPUs, MemoryMB and PidsLimit bound each launched container (0: no
	// bound).
	CPUs      float64 `mapstructure:"cpus"`
	MemoryMB  int     `mapstructure:"memory_mb"`
	PidsLimit int     `mapstructure:"pids_limit"`
}

// ProcessProvider configures the process media node provider.
type ProcessProvider struct {
	Binary    string   `mapstructure:"binary"`
	BindIP    string   `mapstructure:"bind_ip"`
	PublicIPs []string `mapstructure:"public_ips"`
	LogDir    string   `mapstructure:"log_dir"`
}

// Autoscaling is OpenVidu Pro's autoscaling (OPENVIDU_PRO_CLUSTER_AUTOSCALING*).
type Autoscaling struct {
	Enabled  bool          `mapstructure:"enabled"`
	MaxNodes int           `mapstructure:"max_nodes"`
	MinNodes int           `mapstructure:"min_nodes"`
	MaxLoad  float64       `mapstructure:"max_load"`
	MinLoad  float64       `mapstructure:"min_load"`
	Interval time.Duration `mapstructure:"interval"`
	CoolDown time.Duration `mapstructure:"cool_down"`
	Drain    string        `mapstructure:"drain"`
}

// Redis selects the Redis deployment: one address, a Sentinel set (with
// SentinelMasterName) or a Redis Cluster (several addresses).
type Redis struct {
	Addrs              []string      `mapstructure:"addrs"`
	Username           string        `mapstructure:"username"`
	Password           string        `mapstructure:"password"`
	DB                 int           `mapstructure:"db"`
	SentinelMasterName string        `mapstructure:"sentinel_master_name"`
	SentinelUsername   string        `mapstructure:"sentinel_username"`
	SentinelPassword   string        `mapstructure:"sentinel_password"`
	Timeout            time.Duration `mapstructure:"timeout"`
	TLS                RedisTLS      `mapstructure:"tls"`
}

// RedisTLS is how Chorus reaches Redis over TLS: the same settings apply to
// a single node, a Sentinel set and its primary, and a Redis Cluster.
type RedisTLS struct {
	Enabled            bool   `mapstructure:"enabled"`
	CAFile             string `mapstructure:"ca_file"`
	CertFile           string `mapstructure:"cert_file"`
	KeyFile            string `mapstructure:"key_file"`
	ServerName         string `mapstructure:"server_name"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

// Log configures log/slog.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Master is the signaling plane's configuration.
type Master struct {
	ID     string `mapstructure:"id"`
	Listen string `mapstructure:"listen"`
	// MetricsListen, when set, serves GET /metrics there without
	// authentication (a scrape address of its own), and no longer on
	// Listen; empty: /metrics on Listen behind the cluster secret.
	MetricsListen            string        `mapstructure:"metrics_listen"`
	InternalURL              string        `mapstructure:"internal_url"`
	PublicURL                string        `mapstructure:"public_url"`
	DomainOrPublicIP         string        `mapstructure:"domain_or_public_ip"`
	HTTPSPort                int           `mapstructure:"https_port"`
	SessionsGarbageInterval  time.Duration `mapstructure:"sessions_garbage_interval"`
	SessionsGarbageThreshold time.Duration `mapstructure:"sessions_garbage_threshold"`
	ForcedVideoCodec         string        `mapstructure:"forced_video_codec"`
	AllowTranscoding         bool          `mapstructure:"allow_transcoding"`
	VideoSimulcast           bool          `mapstructure:"video_simulcast"`
	ReconnectGrace           time.Duration `mapstructure:"reconnect_grace"`
	HeartbeatInterval        time.Duration `mapstructure:"heartbeat_interval"`
	PeerCheckInterval        time.Duration `mapstructure:"peer_check_interval"`
	CrashWindow              time.Duration `mapstructure:"crash_window"`
	DrainWait                time.Duration `mapstructure:"drain_wait"`
	RedisRecoveryGrace       time.Duration `mapstructure:"redis_recovery_grace"`
	RequestTimeout           time.Duration `mapstructure:"request_timeout"`
	MaxMessageBytes          int64         `mapstructure:"max_message_bytes"`
	JoinTimeout              time.Duration `mapstructure:"join_timeout"`
	MaxPingInterval          time.Duration `mapstructure:"max_ping_interval"`
	Edition                  string        `mapstructure:"edition"`
	DepartureDelay           time.Duration `mapstructure:"departure_delay"`
}

// HTTP bounds what a client may hold of the HTTP server of a master, media
// node or proxy (see Server).
type HTTP struct {
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	ReadTimeout       time.Duration `mapstructure:"read_timeout"`
	IdleTimeout       time.Duration `mapstructure:"idle_timeout"`
}

// Server returns an HTTP server of handler with these timeouts: headers
// within ReadHeaderTimeout, the whole request (body included) within
// ReadTimeout, and an idle keep-alive connection closed after IdleTimeout.
// net/http clears the read deadline of a connection it hands over
// (Hijack), so a WebSocket outlives ReadTimeout. No WriteTimeout: a
// streamed response (a recording, the events tail) may take long.
func (h HTTP) Server(handler http.Handler) *http.Server {
	return &http.Server{Handler: handler, ReadHeaderTimeout: h.ReadHeaderTimeout, ReadTimeout: h.ReadTimeout, IdleTimeout: h.IdleTimeout}
}

// Webhook is OpenVidu's webhook (OPENVIDU_WEBHOOK*), with retries.
type Webhook struct {
	Enabled        bool          `mapstructure:"enabled"`
	Endpoint       string        `mapstructure:"endpoint"`
	Headers        []string      `mapstructure:"headers"`
	Events         []string      `mapstructure:"events"`
	AttemptTimeout time.Duration `mapstructure:"attempt_timeout"`
	Deadline       time.Duration `mapstructure:"deadline"`
	RetryWaitMin   time.Duration `mapstructure:"retry_wait_min"`
	RetryWaitMax   time.Duration `mapstructure:"retry_wait_max"`
}

// CDR is OpenVidu's CDR file (OPENVIDU_CDR, OPENVIDU_CDR_PATH).
type CDR struct {
	Enabled bool   `mapstructure:"enabled"`
	Path    string `mapstructure:"path"`
}

// Recording is OpenVidu's recording configuration (OPENVIDU_RECORDING,
// OPENVIDU_RECORDING_PATH, OPENVIDU_RECORDING_PUBLIC_ACCESS).
type Recording struct {
	Enabled      bool   `mapstructure:"enabled"`
	Path         string `mapstructure:"path"`
	PublicAccess bool   `mapstructure:"public_access"`
	// AutostopTimeout is OPENVIDU_RECORDING_AUTOSTOP_TIMEOUT.
	AutostopTimeout time.Duration `mapstructure:"autostop_timeout"`
	// Storage is local or s3 (OPENVIDU_PRO_RECORDING_STORAGE).
	Storage string      `mapstructure:"storage"`
	S3      RecordingS3 `mapstructure:"s3"`
}

// RecordingS3 is OpenVidu Pro's S3 storage of recordings
// (OPENVIDU_PRO_AWS_*; recording.md "Uploading recordings to S3").
type RecordingS3 struct {
	Bucket    string `mapstructure:"bucket"`
	Endpoint  string `mapstructure:"endpoint"`
	PathStyle bool   `mapstructure:"path_style"`
	AccessKey string `mapstructure:"access_key"`
	SecretKey string `mapstructure:"secret_key"`
	Region    string `mapstructure:"region"`
	// Headers is a JSON object of header names and values (HeaderMap).
	Headers        string        `mapstructure:"headers"`
	UploadDeadline time.Duration `mapstructure:"upload_deadline"`
}

// HeaderMap decodes Headers.
func (s RecordingS3) HeaderMap() (map[string]string, error) {
	if strings.TrimSpace(s.Headers) == "" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s.Headers), &m); err != nil {
		return nil, fmt.Errorf("recording.s3.headers is not a JSON object of strings: %w", err)
	}
	return m, nil
}

// Recorder is a recording worker's configuration (chorus recorder).
type Recorder struct {
	ID           string        `mapstructure:"id"`
	WorkDir      string        `mapstructure:"work_dir"`
	LeaseTTL     time.Duration `mapstructure:"lease_ttl"`
	MaxJobs      int           `mapstructure:"max_jobs"`
	LoopbackOnly bool          `mapstructure:"loopback_only"`
	// SignalingURL replaces the recorder token's scheme and host.
	SignalingURL string `mapstructure:"signaling_url"`
	// TLSCAFile holds extra trusted certificates for wss://.
	TLSCAFile string `mapstructure:"tls_ca_file"`
}

// NetworkQuality turns on networkQualityLevelChanged (OpenVidu Pro's
// OPENVIDU_PRO_NETWORK_QUALITY and OPENVIDU_PRO_NETWORK_QUALITY_INTERVAL).
type NetworkQuality struct {
	Enabled  bool          `mapstructure:"enabled"`
	Interval time.Duration `mapstructure:"interval"`
}

// Events sizes the event bus.
type Events struct {
	MaxLen           int64         `mapstructure:"max_len"`
	DeadLetterMaxLen int64         `mapstructure:"dead_letter_max_len"`
	LeaseTTL         time.Duration `mapstructure:"lease_ttl"`
}

// Media is a media node's configuration.
type Media struct {
	ID          string `mapstructure:"id"`
	Listen      string `mapstructure:"listen"`
	InternalURL string `mapstructure:"internal_url"`
	// MetricsListen, when set, serves GET /metrics there without
	// authentication (bind it to a private address for Prometheus) and no
	// longer on Listen; empty: /metrics on Listen behind the cluster secret.
	MetricsListen string `mapstructure:"metrics_listen"`
	UDPPort       int    `mapstructure:"udp_port"`
	// TCPPort is the passive ICE-TCP port (RFC 6544): > 0 that port, 0 one
	// chosen by the system, < 0 no ICE-TCP.
	TCPPort   int      `mapstructure:"tcp_port"`
	BindIP    string   `mapstructure:"bind_ip"`
	PublicIPs []string `mapstructure:"public_ips"`
	// AnnouncePrivateIPs keeps the node's own addresses in its host
	// candidates beside PublicIPs (appended rather than replacing them).
	AnnouncePrivateIPs   bool          `mapstructure:"announce_private_ips"`
	HeartbeatInterval    time.Duration `mapstructure:"heartbeat_interval"`
	ReconcileInterval    time.Duration `mapstructure:"reconcile_interval"`
	ReconcileGrace       time.Duration `mapstructure:"reconcile_grace"`
	RetransmissionBuffer int           `mapstructure:"retransmission_buffer"`
	SimulcastLayerCap    bool          `mapstructure:"simulcast_layer_cap"`
	BatchWrites          bool          `mapstructure:"batch_writes"`
}

// Proxy is the public entry point's configuration.
type Proxy struct {
	Listen         string        `mapstructure:"listen"`
	Masters        []string      `mapstructure:"masters"`
	HealthInterval time.Duration `mapstructure:"health_interval"`
	HealthTimeout  time.Duration `mapstructure:"health_timeout"`
	// DialTimeout bounds the TCP handshake with a master; past it the
	// request goes to another master (a host that is gone drops SYNs).
	DialTimeout    time.Duration `mapstructure:"dial_timeout"`
	UnhealthyAfter int           `mapstructure:"unhealthy_after"`
	RequestTimeout time.Duration `mapstructure:"request_timeout"`
	// TrustedProxies are CIDRs (or IPs) of proxies in front of the Chorus
	// proxy, a load balancer say, whose X-Forwarded-For is kept; masters
	// skip them too when they report a participant's IP.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// MetricsListen, when set, serves the proxy's Prometheus metrics
	// there (GET /metrics, no authentication: a private address). The
	// public listener never serves /metrics.
	MetricsListen string    `mapstructure:"metrics_listen"`
	Demo          Demo      `mapstructure:"demo"`
	Inspector     Inspector `mapstructure:"inspector"`
	TLS           TLS       `mapstructure:"tls"`
}

// Inspector is the proxy's web console at /inspector (OpenVidu Inspector's
// job): log in with the OpenVidu secret, see and drive the cluster.
type Inspector struct {
	Enabled bool `mapstructure:"enabled"`
	// LoginTTL is how long a login lasts.
	LoginTTL time.Duration `mapstructure:"login_ttl"`
}

// TLS is how the proxy serves HTTPS: off, from files, or self-signed.
type TLS struct {
	Mode          string   `mapstructure:"mode"`
	CertFile      string   `mapstructure:"cert_file"`
	KeyFile       string   `mapstructure:"key_file"`
	SelfSignedDir string   `mapstructure:"self_signed_dir"`
	Hosts         []string `mapstructure:"hosts"`
}

// Demo is the demo page served by the proxy.
type Demo struct {
	Enabled   bool   `mapstructure:"enabled"`
	AssetsDir string `mapstructure:"assets_dir"`
	RateLimit int    `mapstructure:"rate_limit"`
	RateBurst int    `mapstructure:"rate_burst"`
}

// RegisterFlags adds a flag for every key the role reads, with the key's
// default and usage, plus --config.
func RegisterFlags(fs *pflag.FlagSet, role Role) {
	fs.String("config", "", "YAML configuration file (see configs/)")
	for _, k := range Keys() {
		if !k.usedBy(role) {
			continue
		}
		usage := k.Usage + " Env: " + strings.Join(k.Env, ", ") + "."
		switch d := k.Default.(type) {
		case string:
			fs.String(k.Flag(), d, usage)
		case int:
			fs.Int(k.Flag(), d, usage)
		case bool:
			fs.Bool(k.Flag(), d, usage)
		case float64:
			fs.Float64(k.Flag(), d, usage)
		case time.Duration:
			fs.Duration(k.Flag(), d, usage)
		case []string:
			fs.StringSlice(k.Flag(), d, usage)
		default:
			panic(fmt.Sprintf("config: key %s has an unsupported default type %T", k.Name, d))
		}
	}
}

// Load builds the configuration for a role from defaults, the file named by
// --config, the environment (env is the process environment as os.Environ
// gives it; nil means none) and the flags that were set on fs.
func Load(fs *pflag.FlagSet, role Role, env []string) (*Config, error) {
	v := viper.New()
	envMap := make(map[string]string, len(env))
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok {
			envMap[k] = val
		}
	}
	if err := readEnvFiles(envMap); err != nil {
		return nil, err
	}
	for _, k := range Keys() {
		v.SetDefault(k.Name, k.Default)
		// Environment: the first variable that is set wins, CHORUS_* before OpenVidu's.
		for _, name := range k.Env {
			if val, ok := envMap[name]; ok {
				v.Set(k.Name, val)
				break
			}
		}
		if fs != nil && k.usedBy(role) {
			if f := fs.Lookup(k.Flag()); f != nil && f.Changed {
				v.Set(k.Name, flagValue(f))
			}
		}
	}
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
			fileV := viper.New()
			fileV.SetConfigFile(f.Value.String())
			if err := fileV.ReadInConfig(); err != nil {
				return nil, fmt.Errorf("read config file %s: %w", f.Value.String(), err)
			}
			// The file sits between defaults and env/flags: apply only keys
			// that env and flags did not set.
			for _, key := range fileV.AllKeys() {
				if !setByEnvOrFlag(key, envMap, fs, role) {
					v.Set(key, fileV.Get(key))
				}
			}
		}
	}
	var c Config
	err := v.UnmarshalExact(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		secondsOrDurationHook,
		jsonArrayHook,
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.applyDerived()
	return &c, nil
}

// readEnvFiles resolves the NAME_FILE form of every variable a key reads:
// NAME_FILE=/run/secrets/x sets NAME to that file's content, one trailing
// newline removed, as the official images of Postgres or MySQL do, so that
// secrets can come from Docker Swarm secrets or Kubernetes secret volumes
// instead of the environment (`docker inspect` shows a container's
// environment to anyone who can reach the engine). Setting both NAME and
// NAME_FILE is an error, as is a file that cannot be read.
func readEnvFiles(envMap map[string]string) error {
	for _, k := range Keys() {
		for _, name := range k.Env {
			path, ok := envMap[name+"_FILE"]
			if !ok {
				continue
			}
			if _, both := envMap[name]; both {
				return fmt.Errorf("config: both %s and %s_FILE are set: keep one", name, name)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("config: %s_FILE: %w", name, err)
			}
			val := strings.TrimSuffix(string(b), "\n")
			envMap[name] = strings.TrimSuffix(val, "\r")
		}
	}
	return nil
}

func setByEnvOrFlag(key string, envMap map[string]string, fs *pflag.FlagSet, role Role) bool {
	for _, k := range Keys() {
		if k.Name != key {
			continue
		}
		for _, name := range k.Env {
			if _, ok := envMap[name]; ok {
				return true
			}
		}
		if fs != nil && k.usedBy(role) {
			if f := fs.Lookup(k.Flag()); f != nil && f.Changed {
				return true
			}
		}
	}
	return false
}

func flagValue(f *pflag.Flag) any {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	return f.Value.String()
}

// secondsOrDurationHook decodes durations from Go duration strings ("1.5s")
// and, as OpenVidu's variables are plain seconds, from bare numbers ("900").
func secondsOrDurationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		if n, err := strconv.ParseFloat(strings.TrimSpace(d), 64); err == nil {
			return time.Duration(n * float64(time.Second)), nil
		}
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q (use 1.5s, 200ms or a number of seconds)", d)
		}
		return dur, nil
	case int:
		return time.Duration(d) * time.Second, nil
	case float64:
		return time.Duration(d * float64(time.Second)), nil
	}
	return data, nil
}

// jsonArrayHook decodes a string holding a JSON array of strings into a
// []string: OpenVidu's list variables look like ["a","b"].
func jsonArrayHook(from, to reflect.Type, data any) (any, error) {
	str, ok := data.(string)
	if !ok || to != reflect.TypeOf([]string(nil)) || !strings.HasPrefix(strings.TrimSpace(str), "[") {
		return data, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(str), &out); err != nil {
		return nil, fmt.Errorf("Is not a valid strings array in JSON format. %w", err) //nolint:staticcheck // OpenVidu's own message (ST1005)
	}
	return out, nil
}

// applyDerived fills settings whose default depends on other settings.
func (c *Config) applyDerived() {
	if c.Master.InternalURL == "" && c.Master.Listen != "" {
		c.Master.InternalURL = "http://" + dialable(c.Master.Listen)
	}
	if c.Master.PublicURL == "" {
		if c.Master.DomainOrPublicIP != "" {
			c.Master.PublicURL = fmt.Sprintf("wss://%s:%d", c.Master.DomainOrPublicIP, c.Master.HTTPSPort)
		} else {
			c.Master.PublicURL = "ws://localhost:4443"
		}
	}
	// OPENVIDU_PUBLICURL is an http(s) URL; tokens need its ws(s) form.
	if rest, ok := strings.CutPrefix(c.Master.PublicURL, "https://"); ok {
		c.Master.PublicURL = "wss://" + rest
	} else if rest, ok := strings.CutPrefix(c.Master.PublicURL, "http://"); ok {
		c.Master.PublicURL = "ws://" + rest
	}
	c.Master.PublicURL = strings.TrimRight(c.Master.PublicURL, "/")
	if c.Media.InternalURL == "" && c.Media.Listen != "" {
		c.Media.InternalURL = "http://" + dialable(c.Media.Listen)
	}
	if c.Master.ForcedVideoCodec == "MEDIA_SERVER_PREFERRED" {
		c.Master.ForcedVideoCodec = "VP8"
	}
}

// dialable turns a listen address such as ":5443" or "0.0.0.0:5443" into one a
// peer on the same host can dial.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Validate checks the settings the role uses and returns every problem found,
// joined, or nil.
func (c *Config) Validate(role Role) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if c.ClusterID == "" || strings.ContainsAny(c.ClusterID, "{}: \t") {
		bad("cluster_id %q must be non-empty and contain none of '{', '}', ':' or spaces", c.ClusterID)
	}
	if len(c.Redis.Addrs) == 0 {
		bad("redis.addrs is empty: give at least one host:port")
	}
	for _, a := range c.Redis.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("redis.addrs: %q is not host:port", a)
		}
	}
	if c.Redis.Timeout <= 0 {
		bad("redis.timeout must be positive, got %s", c.Redis.Timeout)
	}
	c.validateRedisAuth(role, bad)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format %q must be text or json", c.Log.Format)
	}
	if c.PublishedIP != "" && net.ParseIP(c.PublishedIP) == nil {
		bad("published_ip %q is not an IP address", c.PublishedIP)
	}
	problems = append(problems, c.SecretProblems(role)...)
	if role == RoleMaster || role == RoleMedia || role == RoleProxy {
		positive(bad, "http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
		positive(bad, "http.idle_timeout", c.HTTP.IdleTimeout)
		if c.HTTP.ReadTimeout < c.HTTP.ReadHeaderTimeout {
			bad("http.read_timeout (%s) must be at least http.read_header_timeout (%s)", c.HTTP.ReadTimeout, c.HTTP.ReadHeaderTimeout)
		}
	}
	switch role {
	case RoleMaster:
		m := c.Master
		checkListen(bad, "master.listen", m.Listen)
		if c.Master.MetricsListen != "" {
			checkListen(bad, "master.metrics_listen", c.Master.MetricsListen)
		}
		checkURL(bad, "master.internal_url", m.InternalURL, "http", "https")
		checkURL(bad, "master.public_url", m.PublicURL, "ws", "wss")
		if m.SessionsGarbageInterval < 0 {
			bad("master.sessions_garbage_interval must not be negative")
		}
		if m.SessionsGarbageThreshold < 0 {
			bad("master.sessions_garbage_threshold must not be negative")
		}
		switch m.ForcedVideoCodec {
		case "VP8", "H264":
		default:
			bad("master.forced_video_codec %q must be VP8, H264 or MEDIA_SERVER_PREFERRED", m.ForcedVideoCodec)
		}
		positive(bad, "master.reconnect_grace", m.ReconnectGrace)
		positive(bad, "master.heartbeat_interval", m.HeartbeatInterval)
		positive(bad, "master.peer_check_interval", m.PeerCheckInterval)
		if m.CrashWindow < 2*m.PeerCheckInterval {
			bad("master.crash_window (%s) must span at least two peer checks (%s each)", m.CrashWindow, m.PeerCheckInterval)
		}
		if m.DrainWait < 0 {
			bad("master.drain_wait must not be negative")
		}
		if m.DepartureDelay < 0 || m.DepartureDelay > 5*time.Second {
			bad("master.departure_delay must be between 0 and 5s, got %s", m.DepartureDelay)
		}
		positive(bad, "master.request_timeout", m.RequestTimeout)
		if m.JoinTimeout < time.Second || m.JoinTimeout > 5*time.Minute {
			bad("master.join_timeout must be between 1s and 5m, got %s", m.JoinTimeout)
		}
		if m.MaxPingInterval < time.Second || m.MaxPingInterval > 5*time.Minute {
			bad("master.max_ping_interval must be between 1s and 5m, got %s", m.MaxPingInterval)
		}
		switch m.Edition {
		case "ce", "pro", "enterprise":
		default:
			bad("master.edition %q must be ce, pro or enterprise", m.Edition)
		}
		if m.MaxMessageBytes < 64<<10 {
			bad("master.max_message_bytes must be at least 65536 (an SDP alone can take 10 KB), got %d", m.MaxMessageBytes)
		}
		if nq := c.NetworkQuality; nq.Enabled && (nq.Interval < time.Second || nq.Interval > time.Hour) {
			bad("network_quality.interval must be between 1s and 1h, got %s", nq.Interval)
		}
		if c.Recording.AutostopTimeout < 0 {
			bad("recording.autostop_timeout is negative")
		}
		if c.Recording.Enabled && c.Recording.Path == "" {
			bad("recording.path is empty while recording is enabled")
		}
		c.validateRecordingStorage(bad)
		c.validateEvents(bad)
		c.validateLimits(bad)
		c.validateMediaNodes(bad)
		c.validateTurnURLs(bad)
	case RoleRecorder:
		if c.Recording.Path == "" {
			bad("recording.path is empty")
		}
		if c.Recorder.LeaseTTL < 300*time.Millisecond {
			bad("recorder.lease_ttl must be at least 300ms, got %s", c.Recorder.LeaseTTL)
		}
		if c.Recorder.MaxJobs < 1 {
			bad("recorder.max_jobs must be at least 1, got %d", c.Recorder.MaxJobs)
		}
		c.validateRecordingStorage(bad)
		if c.Recorder.SignalingURL != "" {
			checkURL(bad, "recorder.signaling_url", c.Recorder.SignalingURL, "ws", "wss")
		}
		if c.Recording.S3.UploadDeadline <= 0 {
			bad("recording.s3.upload_deadline must be positive, got %s", c.Recording.S3.UploadDeadline)
		}
	case RoleTurn:
		c.validateTurn(bad)
	case RoleMedia:
		m := c.Media
		checkListen(bad, "media.listen", m.Listen)
		if m.MetricsListen != "" {
			checkListen(bad, "media.metrics_listen", m.MetricsListen)
		}
		checkURL(bad, "media.internal_url", m.InternalURL, "http", "https")
		if m.UDPPort < 1 || m.UDPPort > 65535 {
			bad("media.udp_port %d is not a port number", m.UDPPort)
		}
		if m.TCPPort > 65535 {
			bad("media.tcp_port %d is not a port number (0: chosen by the system, -1: ICE-TCP off)", m.TCPPort)
		}
		if net.ParseIP(m.BindIP) == nil {
			bad("media.bind_ip %q is not an IP address", m.BindIP)
		}
		for _, ip := range m.PublicIPs {
			if net.ParseIP(ip) == nil {
				bad("media.public_ips: %q is not an IP address", ip)
			}
		}
		positive(bad, "media.heartbeat_interval", m.HeartbeatInterval)
		positive(bad, "media.reconcile_interval", m.ReconcileInterval)
		if m.ReconcileGrace < m.ReconcileInterval {
			bad("media.reconcile_grace (%s) must be at least media.reconcile_interval (%s)", m.ReconcileGrace, m.ReconcileInterval)
		}
		if n := m.RetransmissionBuffer; n < 64 || n > 1<<15 || n&(n-1) != 0 {
			bad("media.retransmission_buffer %d must be a power of two between 64 and 32768", n)
		}
	case RoleProxy:
		p := c.Proxy
		checkListen(bad, "proxy.listen", p.Listen)
		if c.Proxy.MetricsListen != "" {
			checkListen(bad, "proxy.metrics_listen", c.Proxy.MetricsListen)
		}
		for _, m := range p.Masters {
			checkURL(bad, "proxy.masters", m, "http", "https")
		}
		positive(bad, "proxy.health_interval", p.HealthInterval)
		positive(bad, "proxy.health_timeout", p.HealthTimeout)
		positive(bad, "proxy.dial_timeout", p.DialTimeout)
		positive(bad, "proxy.request_timeout", p.RequestTimeout)
		if p.UnhealthyAfter < 1 {
			bad("proxy.unhealthy_after must be at least 1, got %d", p.UnhealthyAfter)
		}
		if c.Limits.WebSocketsPerIP < 0 {
			bad("limits.websockets_per_ip must not be negative (0: no limit), got %d", c.Limits.WebSocketsPerIP)
		}
		if p.Inspector.Enabled && (p.Inspector.LoginTTL < time.Minute || p.Inspector.LoginTTL > 7*24*time.Hour) {
			bad("proxy.inspector.login_ttl must be between 1m and 168h, got %s", p.Inspector.LoginTTL)
		}
		if p.Demo.Enabled && p.Demo.AssetsDir == "" {
			bad("proxy.demo.assets_dir is empty while the demo is enabled")
		}
		if p.Demo.Enabled && (p.Demo.RateLimit < 1 || p.Demo.RateBurst < 1) {
			bad("proxy.demo.rate_limit (%d) and proxy.demo.rate_burst (%d) must be at least 1 while the demo is enabled", p.Demo.RateLimit, p.Demo.RateBurst)
		}
		validateTLS(bad, "proxy.tls", p.TLS)
	}
	if role == RoleMaster || role == RoleProxy {
		for _, e := range c.Proxy.TrustedProxies {
			if _, err := netip.ParsePrefix(e); err != nil && net.ParseIP(e) == nil {
				bad("proxy.trusted_proxies: %q is neither a CIDR nor an IP address", e)
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New("invalid configuration:\n  - " + strings.Join(problems, "\n  - "))
}

// validateRedisAuth checks the Redis credentials and TLS settings: a
// client certificate needs its key, TLS settings need redis.tls.enabled, Sentinel
// credentials need a Sentinel, and skipping certificate verification is for
// development only (refused on a process reachable from other machines).
func (c *Config) validateRedisAuth(role Role, bad func(string, ...any)) {
	r := c.Redis
	if r.SentinelMasterName == "" && (r.SentinelUsername != "" || r.SentinelPassword != "") {
		bad("redis.sentinel_username and redis.sentinel_password are for Sentinel: set redis.sentinel_master_name too, or use redis.username and redis.password")
	}
	t := r.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("redis.tls.cert_file and redis.tls.key_file go together (the client certificate and its key)")
	}
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		bad("redis.tls.* is set but redis.tls.enabled is false: set CHORUS_REDIS_TLS_ENABLED=true to reach Redis over TLS")
	}
	if t.Enabled && t.InsecureSkipVerify {
		if exposed, where := c.Exposed(role); exposed {
			bad("redis.tls.insecure_skip_verify is for development only, refused while %s is reachable from other machines: give redis.tls.ca_file instead", where)
		}
	}
}

// validateLimits checks the limits.* settings a master applies.
func (c *Config) validateLimits(bad func(string, ...any)) {
	l := c.Limits
	for _, v := range []struct {
		name  string
		value int64
	}{
		{"limits.signal_data_bytes", int64(l.SignalDataBytes)}, {"limits.metadata_bytes", int64(l.MetadataBytes)},
		{"limits.outbox_bytes", l.OutboxBytes}, {"limits.signals_per_second", int64(l.SignalsPerSecond)},
		{"limits.participants_per_session", int64(l.ParticipantsPerSession)}, {"limits.held_requests", int64(l.HeldRequests)},
	} {
		if v.value < 0 {
			bad("%s must not be negative (0: no limit), got %d", v.name, v.value)
		}
	}
	if l.SignalDataBytes > 0 && int64(l.SignalDataBytes) >= c.Master.MaxMessageBytes {
		bad("limits.signal_data_bytes (%d) must be below master.max_message_bytes (%d): a larger signal would close the socket instead of being refused",
			l.SignalDataBytes, c.Master.MaxMessageBytes)
	}
	if l.OutboxBytes > 0 && l.OutboxBytes < 1<<20 {
		bad("limits.outbox_bytes must be at least 1048576 (a few notifications with SDPs), got %d", l.OutboxBytes)
	}
}

// validateEvents checks the webhook, CDR and bus settings, with
// openvidu-server's wording for the webhook's (OpenviduConfig).
func (c *Config) validateEvents(bad func(string, ...any)) {
	w := c.Webhook
	if strings.TrimSpace(w.Endpoint) != "" {
		u, err := url.Parse(w.Endpoint)
		switch {
		case err != nil:
			bad("webhook.endpoint (OPENVIDU_WEBHOOK_ENDPOINT=%s): Is not a valid URL. String '%s' has not a valid URL format: %v", w.Endpoint, w.Endpoint, err)
		case u.Scheme == "":
			bad("webhook.endpoint (OPENVIDU_WEBHOOK_ENDPOINT=%s): Is not a valid URL. Missing URL scheme", w.Endpoint)
		case u.Host == "":
			bad("webhook.endpoint (OPENVIDU_WEBHOOK_ENDPOINT=%s): Is not a valid URL. Missing URL host", w.Endpoint)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("webhook.endpoint (OPENVIDU_WEBHOOK_ENDPOINT=%s): the scheme must be http or https", w.Endpoint)
		}
	} else if w.Enabled {
		bad("webhook.endpoint (OPENVIDU_WEBHOOK_ENDPOINT): With OPENVIDU_WEBHOOK=true, this property cannot be empty")
	}
	for _, h := range w.Headers {
		if h == "" {
			continue
		}
		name, value, ok := strings.Cut(h, ": ")
		switch {
		case !ok:
			bad("webhook.headers (OPENVIDU_WEBHOOK_HEADERS): HTTP header '%s' syntax is not correct. Must be 'HEADER_NAME: HEADER_VALUE'. For example: 'Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l'", h)
		case strings.TrimSpace(name) == "":
			bad("webhook.headers (OPENVIDU_WEBHOOK_HEADERS): HTTP header '%s' syntax is not correct. Header name cannot be empty", h)
		case strings.TrimSpace(value) == "":
			bad("webhook.headers (OPENVIDU_WEBHOOK_HEADERS): HTTP header '%s' syntax is not correct. Header value cannot be empty", h)
		}
	}
	known := append(defaultWebhookEvents(), "HANodeRegistered", "HANodeDeregistered")
	for _, e := range w.Events {
		if !slices.Contains(known, e) {
			bad("webhook.events (OPENVIDU_WEBHOOK_EVENTS): Event '%s' does not exist", e)
		}
	}
	positive(bad, "webhook.attempt_timeout", w.AttemptTimeout)
	positive(bad, "webhook.deadline", w.Deadline)
	positive(bad, "webhook.retry_wait_min", w.RetryWaitMin)
	if w.RetryWaitMax < w.RetryWaitMin {
		bad("webhook.retry_wait_max (%s) must not be below webhook.retry_wait_min (%s)", w.RetryWaitMax, w.RetryWaitMin)
	}
	if c.CDR.Enabled && strings.TrimSpace(c.CDR.Path) == "" {
		bad("cdr.path (OPENVIDU_CDR_PATH) is empty while the CDR is enabled")
	}
	if c.Events.MaxLen < 100 {
		bad("events.max_len must be at least 100, got %d", c.Events.MaxLen)
	}
	if c.Events.DeadLetterMaxLen < 100 {
		bad("events.dead_letter_max_len must be at least 100, got %d", c.Events.DeadLetterMaxLen)
	}
	if c.Events.LeaseTTL < time.Second {
		bad("events.lease_ttl must be at least 1s, got %s", c.Events.LeaseTTL)
	}
}

func checkListen(bad func(string, ...any), name, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		bad("%s %q is not host:port", name, addr)
	}
}

func checkURL(bad func(string, ...any), name, raw string, schemes ...string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		bad("%s %q is not an absolute URL", name, raw)
		return
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return
		}
	}
	bad("%s %q must use scheme %s", name, raw, strings.Join(schemes, " or "))
}

func positive(bad func(string, ...any), name string, d time.Duration) {
	if d <= 0 {
		bad("%s must be positive, got %s", name, d)
	}
}

// NewLogger builds the process logger the configuration asks for, writing to w.
func (l Log) NewLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // validated by Validate; info otherwise
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// EffectiveReconnectionTimeout resolves media_nodes.reconnection_timeout's 0
// as OpenVidu does: forever (-1) for nodes on premises without autoscaling,
// else 3 s. Negative means forever.
func (c *Config) EffectiveReconnectionTimeout() time.Duration {
	switch rt := c.MediaNodes.ReconnectionTimeout; {
	case rt < 0:
		return -1
	case rt > 0:
		return rt
	case c.MediaNodes.Provider == "static" && !c.Autoscaling.Enabled:
		return -1
	}
	return 3 * time.Second
}

func (c *Config) validateMediaNodes(bad func(string, ...any)) {
	m := c.MediaNodes
	switch m.Provider {
	case "static", "process", "docker", "swarm":
	default:
		bad("media_nodes.provider %q must be static, process, docker or swarm", m.Provider)
	}
	positive(bad, "media_nodes.launch_timeout", m.LaunchTimeout)
	if m.CrashWindow < time.Second {
		bad("media_nodes.crash_window must be at least 1s (nodes heartbeat every second), got %s", m.CrashWindow)
	}
	if rt := m.ReconnectionTimeout; rt > 0 && rt < m.CrashWindow {
		bad("media_nodes.reconnection_timeout (%s) must be -1, 0 or at least media_nodes.crash_window (%s)", rt, m.CrashWindow)
	}
	switch m.CrashPolicy {
	case "migrate", "close":
	default:
		bad("media_nodes.crash_policy %q must be migrate or close", m.CrashPolicy)
	}
	if m.MaxLoad < 0 || m.MaxLoad > 100 {
		bad("media_nodes.max_load %g must be between 0 and 100", m.MaxLoad)
	}
	positive(bad, "media_nodes.hold_timeout", m.HoldTimeout)
	if m.NudgeDelay < 0 || m.NudgeCrashDelay < 0 || m.NudgeInterval <= 0 || m.NudgeCount < 0 || m.NudgeCount > 40 {
		bad("media_nodes.nudge_*: need nudge_delay >= 0, nudge_crash_delay >= 0, nudge_interval > 0 and 0 <= nudge_count <= 40")
	}
	if ip := m.Process.BindIP; m.Provider == "process" && net.ParseIP(ip) == nil {
		bad("media_nodes.process.bind_ip %q is not an IP address", ip)
	}
	for _, ip := range m.Process.PublicIPs {
		if net.ParseIP(ip) == nil {
			bad("media_nodes.process.public_ips: %q is not an IP address", ip)
		}
	}
	if sw := m.Swarm; m.Provider == "swarm" {
		if !strings.HasPrefix(sw.PublicIPFile, "/") {
			bad("media_nodes.swarm.public_ip_file %q must be an absolute path", sw.PublicIPFile)
		}
		if k, _, ok := strings.Cut(sw.NodeLabel, "="); sw.NodeLabel != "" && (!ok || k == "") {
			bad("media_nodes.swarm.node_label %q must be key=value", sw.NodeLabel)
		}
	}
	if d := m.Docker; m.Provider == "docker" || m.Provider == "swarm" {
		if m.Provider == "docker" && net.ParseIP(d.PublishIP) == nil {
			bad("media_nodes.docker.publish_ip %q is not an IP address", d.PublishIP)
		}
		for _, ip := range d.PublicIPs {
			if net.ParseIP(ip) == nil {
				bad("media_nodes.docker.public_ips: %q is not an IP address", ip)
			}
		}
		if d.UDPPortMin < 1 || d.UDPPortMax > 65535 || d.UDPPortMin > d.UDPPortMax {
			bad("media_nodes.docker: need 1 <= udp_port_min (%d) <= udp_port_max (%d) <= 65535", d.UDPPortMin, d.UDPPortMax)
		}
		if d.CPUs < 0 || d.MemoryMB < 0 || (d.MemoryMB > 0 && d.MemoryMB < 64) || d.PidsLimit < 0 || (d.PidsLimit > 0 && d.PidsLimit < 64) {
			bad("media_nodes.docker: cpus (%g) must be >= 0, memory_mb (%d) 0 or at least 64, pids_limit (%d) 0 or at least 64", d.CPUs, d.MemoryMB, d.PidsLimit)
		}
	}
	a := c.Autoscaling
	if a.MinNodes < 0 || a.MaxNodes < 1 || a.MinNodes > a.MaxNodes {
		bad("autoscaling: need 0 <= min_nodes (%d) <= max_nodes (%d) and max_nodes >= 1", a.MinNodes, a.MaxNodes)
	}
	if a.MinLoad < 0 || a.MaxLoad > 100 || a.MinLoad >= a.MaxLoad {
		bad("autoscaling: need 0 <= min_load (%g) < max_load (%g) <= 100", a.MinLoad, a.MaxLoad)
	}
	positive(bad, "autoscaling.interval", a.Interval)
	if a.CoolDown < 0 {
		bad("autoscaling.cool_down must not be negative")
	}
	switch a.Drain {
	case "when-no-sessions", "migrate":
	default:
		bad("autoscaling.drain %q must be when-no-sessions or migrate", a.Drain)
	}
}

// validateTLS checks a TLS block named prefix (proxy.tls, turn.tls).
func validateTLS(bad func(string, ...any), prefix string, t TLS) {
	switch t.Mode {
	case "off":
	case "file":
		if t.CertFile == "" || t.KeyFile == "" {
			bad("%s.mode file needs %s.cert_file and %s.key_file", prefix, prefix, prefix)
		}
	case "self-signed":
		if t.SelfSignedDir == "" {
			bad("%s.self_signed_dir is empty while %s.mode is self-signed", prefix, prefix)
		}
	default:
		bad("%s.mode %q must be off, file or self-signed", prefix, t.Mode)
	}
}

// validateTurnURLs checks what masters hand to participants: STUN/TURN URLs
// (RFC 7064, RFC 7065); the secret that mints credentials for TURN ones is
// SecretProblems's.
func (c *Config) validateTurnURLs(bad func(string, ...any)) {
	t := c.Turn
	for _, u := range t.URLs {
		scheme, rest, ok := strings.Cut(u, ":")
		switch {
		case !ok || rest == "":
			bad("turn.urls: %q is not a stun:, turn: or turns: URL", u)
		case scheme == "turn" || scheme == "turns" || scheme == "stun" || scheme == "stuns":
		default:
			bad("turn.urls: %q is not a stun:, turn: or turns: URL", u)
		}
	}
	if len(t.URLs) > 0 && t.CredentialTTL < time.Minute {
		bad("turn.credential_ttl must be at least 1m, got %s", t.CredentialTTL)
	}
}

// validateTurn checks the turn role's settings.
func (c *Config) validateTurn(bad func(string, ...any)) {
	t := c.Turn
	// turn.secret's rules: SecretProblems.
	if net.ParseIP(t.ListenIP) == nil {
		bad("turn.listen_ip %q is not an IP address", t.ListenIP)
	}
	if ip := net.ParseIP(t.RelayIP); ip == nil || ip.IsUnspecified() {
		bad("turn.relay_ip %q must be the IP media nodes can send relayed media to", t.RelayIP)
	}
	if t.RelayBindIP != "" && net.ParseIP(t.RelayBindIP) == nil {
		bad("turn.relay_bind_ip %q is not an IP address", t.RelayBindIP)
	}
	if t.Port > 65535 || t.Port < -1 {
		bad("turn.port %d is not a port number (0: ephemeral, -1: off)", t.Port)
	}
	validateTLS(bad, "turn.tls", t.TLS)
	if t.TLS.Mode != "off" && (t.TLSPort < 0 || t.TLSPort > 65535) {
		bad("turn.tls_port %d is not a port number", t.TLSPort)
	}
	if t.Port < 0 && t.TLS.Mode == "off" {
		bad("turn.port is -1 and turn.tls.mode is off: the TURN server would listen on nothing")
	}
	if !(t.RelayPortMin == 0 && t.RelayPortMax == 0) && (t.RelayPortMin < 1 || t.RelayPortMax > 65535 || t.RelayPortMin > t.RelayPortMax) {
		bad("turn.relay_port_min..max %d-%d is not a port range", t.RelayPortMin, t.RelayPortMax)
	}
	positive(bad, "turn.peer_refresh_interval", t.PeerRefreshInterval)
}

// validateRecordingStorage checks recording.storage and, for s3, its bucket,
// endpoint, credentials and headers.
func (c *Config) validateRecordingStorage(bad func(string, ...any)) {
	r := c.Recording
	switch r.Storage {
	case "local":
	case "s3":
		if strings.Trim(r.S3.Bucket, "/") == "" {
			bad("recording.s3.bucket is empty while recording.storage is s3")
		}
		if r.S3.Endpoint != "" {
			checkURL(bad, "recording.s3.endpoint", r.S3.Endpoint, "http", "https")
		}
		if (r.S3.AccessKey == "") != (r.S3.SecretKey == "") {
			bad("recording.s3.access_key and recording.s3.secret_key go together (both empty: the AWS SDK's default credentials)")
		}
		if _, err := r.S3.HeaderMap(); err != nil {
			bad("%v", err)
		}
	default:
		bad("recording.storage %q must be local or s3", r.Storage)
	}
}
