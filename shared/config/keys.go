package config

import "time"

// defaultWebhookEvents is OPENVIDU_WEBHOOK_EVENTS's default (kept here, not
// imported from shared/events, so that config depends on nothing).
func defaultWebhookEvents() []string {
	return []string{"sessionCreated", "sessionDestroyed", "participantJoined", "participantLeft",
		"webrtcConnectionCreated", "webrtcConnectionDestroyed", "recordingStatusChanged", "filterEventDispatched",
		"signalSent", "mediaNodeStatusChanged", "autoscaling", "nodeCrashed", "nodeRecovered",
		"broadcastStarted", "broadcastStopped"}
}

// Role names a Chorus process kind. A key is offered as a command-line flag only
// to the roles that read it.
type Role string

// The roles of a Chorus cluster.
const (
	RoleMaster Role = "master"
	RoleMedia  Role = "media"
	RoleProxy  Role = "proxy"
	RoleTurn   Role = "turn"
	RoleTool   Role = "tool" // operator commands that only need Redis and the cluster id
)

// Key describes one configuration setting: its viper key (the YAML path), the
// environment variables that set it (CHORUS_* first, then OpenVidu's own name
// where the meaning is the same, so an OpenVidu .env carries over), its
// default, and the roles that use it. The table below is the single source of
// flags, environment bindings, defaults and the README's reference.
type Key struct {
	Name    string
	Env     []string
	Default any
	Roles   []Role
	Usage   string
}

// Flag is the command-line flag for the key: dots and underscores become dashes.
func (k Key) Flag() string {
	out := []byte(k.Name)
	for i, c := range out {
		if c == '.' || c == '_' {
			out[i] = '-'
		}
	}
	return string(out)
}

func (k Key) usedBy(r Role) bool {
	for _, kr := range k.Roles {
		if kr == r {
			return true
		}
	}
	return false
}

var all = []Role{RoleMaster, RoleMedia, RoleProxy, RoleTurn, RoleTool}

// Keys returns every configuration setting Chorus reads. It is a function, not
// a package variable, so that nobody can mutate the table.
func Keys() []Key {
	return []Key{
		{"cluster_id", []string{"CHORUS_CLUSTER_ID", "OPENVIDU_PRO_CLUSTER_ID"}, "chorus", all,
			"Cluster identifier: namespaces every Redis key and appears in events as clusterId."},
		{"secret", []string{"CHORUS_SECRET", "OPENVIDU_SECRET"}, "", []Role{RoleMaster, RoleProxy},
			"OpenVidu secret: REST clients authenticate with Basic OPENVIDUAPP:<secret>; the proxy needs it only for the demo. Required: [a-zA-Z0-9_-] as in OpenVidu; on a listener reachable from other machines at least 16 characters and not MY_SECRET (e.g. openssl rand -hex 24)."},
		{"cluster_secret", []string{"CHORUS_CLUSTER_SECRET"}, "", []Role{RoleMaster, RoleMedia},
			"Secret of the internal APIs (master to media node, master to master, the media nodes' pprof), the same on every master and media node; media nodes never see the OpenVidu secret. Required, same rules as secret, and different from it once reachable from other machines."},
		{"published_ip", []string{"CHORUS_PUBLISHED_IP"}, "", []Role{RoleMaster, RoleMedia, RoleProxy},
			"For a process in a container: the host IP its port (or the proxy's, in front of it) is published on. The secret checks judge it instead of the listen address (127.0.0.1: only this machine reaches the cluster, so development secrets are accepted). Empty: the listen address."},
		{"redis.addrs", []string{"CHORUS_REDIS_ADDRS"}, []string{"127.0.0.1:6379"}, all,
			"Redis addresses (host:port, comma-separated). Several addresses without a master name mean Redis Cluster."},
		{"redis.username", []string{"CHORUS_REDIS_USERNAME"}, "", all,
			"Redis ACL user (with redis.password; empty: the default user). Needs the commands of the string, hash, set, sorted set, stream, pub/sub, scripting and transaction groups on the keys chorus:*."},
		{"redis.password", []string{"CHORUS_REDIS_PASSWORD"}, "", all,
			"Redis password (requirepass, or the ACL user's); of the Sentinel-managed primary and replicas with Sentinel. Best set in the environment. Beyond loopback, docker-compose.yml's development password is refused."},
		{"redis.db", []string{"CHORUS_REDIS_DB"}, 0, all, "Redis database number (single node or Sentinel only)."},
		{"redis.sentinel_master_name", []string{"CHORUS_REDIS_SENTINEL_MASTER_NAME"}, "", all,
			"Redis Sentinel master name; when set, redis.addrs are the Sentinel addresses."},
		{"redis.sentinel_username", []string{"CHORUS_REDIS_SENTINEL_USERNAME"}, "", all,
			"ACL user of the Sentinels themselves (Sentinel's own user, not the primary's)."},
		{"redis.sentinel_password", []string{"CHORUS_REDIS_SENTINEL_PASSWORD"}, "", all,
			"Password of the Sentinels themselves (their requirepass), when they have one."},
		{"redis.tls.enabled", []string{"CHORUS_REDIS_TLS_ENABLED"}, false, all,
			"Reach Redis (every node, Sentinels included) over TLS (Redis's tls-port), verifying its certificate against the system's CAs or redis.tls.ca_file."},
		{"redis.tls.ca_file", []string{"CHORUS_REDIS_TLS_CA_FILE"}, "", all,
			"PEM CA certificates Redis's certificate must chain to (default: the system's)."},
		{"redis.tls.cert_file", []string{"CHORUS_REDIS_TLS_CERT_FILE"}, "", all,
			"PEM client certificate, for a Redis that requires one (tls-auth-clients)."},
		{"redis.tls.key_file", []string{"CHORUS_REDIS_TLS_KEY_FILE"}, "", all,
			"PEM key of the client certificate."},
		{"redis.tls.server_name", []string{"CHORUS_REDIS_TLS_SERVER_NAME"}, "", all,
			"Name Redis's certificate must be valid for (default: the host of the address dialled)."},
		{"redis.tls.insecure_skip_verify", []string{"CHORUS_REDIS_TLS_INSECURE_SKIP_VERIFY"}, false, all,
			"Accept any certificate from Redis: development only, refused on a process reachable from other machines."},
		{"redis.timeout", []string{"CHORUS_REDIS_TIMEOUT"}, 2 * time.Second, all,
			"Dial, read and write timeout of each Redis command."},
		{"log.level", []string{"CHORUS_LOG_LEVEL"}, "info", all, "Log level: debug, info, warn or error."},
		{"log.format", []string{"CHORUS_LOG_FORMAT"}, "text", all, "Log format: text or json."},

		{"master.id", []string{"CHORUS_MASTER_ID"}, "", []Role{RoleMaster},
			"Master node id (default: master_ plus a random suffix, new at every start)."},
		{"master.listen", []string{"CHORUS_MASTER_LISTEN"}, "127.0.0.1:5443", []Role{RoleMaster},
			"Address the master's HTTP server (REST API, WebSocket, internal API) listens on."},
		{"master.internal_url", []string{"CHORUS_MASTER_INTERNAL_URL"}, "", []Role{RoleMaster},
			"URL at which proxies and other masters reach this master (default: http://<listen address>)."},
		{"master.public_url", []string{"CHORUS_MASTER_PUBLIC_URL", "OPENVIDU_PUBLICURL"}, "", []Role{RoleMaster},
			"Public URL of the cluster (the proxy's), used in tokens: ws(s)://host:port. Default from OPENVIDU_DOMAIN_OR_PUBLIC_IP and HTTPS_PORT, else ws://localhost:4443."},
		{"master.domain_or_public_ip", []string{"OPENVIDU_DOMAIN_OR_PUBLIC_IP"}, "", []Role{RoleMaster},
			"OpenVidu's public host name; with https_port it gives the public URL wss://<host>:<port>."},
		{"master.https_port", []string{"HTTPS_PORT"}, 443, []Role{RoleMaster}, "OpenVidu's public HTTPS port."},
		{"master.sessions_garbage_interval", []string{"CHORUS_MASTER_SESSIONS_GARBAGE_INTERVAL", "OPENVIDU_SESSIONS_GARBAGE_INTERVAL"},
			900 * time.Second, []Role{RoleMaster},
			"How often unused sessions are garbage-collected (a bare number is seconds, as in OpenVidu; 0 disables)."},
		{"master.sessions_garbage_threshold", []string{"CHORUS_MASTER_SESSIONS_GARBAGE_THRESHOLD", "OPENVIDU_SESSIONS_GARBAGE_THRESHOLD"},
			3600 * time.Second, []Role{RoleMaster},
			"Minimum age of a session that nobody ever joined before it is garbage-collected (bare number: seconds)."},
		{"master.forced_video_codec", []string{"CHORUS_MASTER_FORCED_VIDEO_CODEC", "OPENVIDU_STREAMS_FORCED_VIDEO_CODEC"},
			"VP8", []Role{RoleMaster},
			"Default forcedVideoCodec of new sessions: VP8, H264 or MEDIA_SERVER_PREFERRED (VP8)."},
		{"master.allow_transcoding", []string{"CHORUS_MASTER_ALLOW_TRANSCODING", "OPENVIDU_STREAMS_ALLOW_TRANSCODING"},
			false, []Role{RoleMaster}, "Default allowTranscoding of new sessions (reported only: Chorus never transcodes)."},
		{"master.reconnect_grace", []string{"CHORUS_MASTER_RECONNECT_GRACE"}, 12 * time.Second, []Role{RoleMaster},
			"How long a participant whose WebSocket broke may take to reconnect before it is evicted with reason networkDisconnect."},
		{"master.heartbeat_interval", []string{"CHORUS_MASTER_HEARTBEAT_INTERVAL"}, time.Second, []Role{RoleMaster},
			"How often a master refreshes its registration in Redis."},
		{"master.peer_check_interval", []string{"CHORUS_MASTER_PEER_CHECK_INTERVAL"}, 250 * time.Millisecond, []Role{RoleMaster},
			"How often a master checks each peer master over HTTP."},
		{"master.crash_window", []string{"CHORUS_MASTER_CRASH_WINDOW"}, 1500 * time.Millisecond, []Role{RoleMaster},
			"A peer failing every check for this long is declared crashed (nodeCrashed) and its participants detached."},
		{"master.drain_wait", []string{"CHORUS_MASTER_DRAIN_WAIT"}, 500 * time.Millisecond, []Role{RoleMaster},
			"On SIGTERM, how long a master answers 503 to health checks before closing its WebSockets (at least the proxies' health interval)."},
		{"master.redis_recovery_grace", []string{"CHORUS_MASTER_REDIS_RECOVERY_GRACE"}, 10 * time.Second, []Role{RoleMaster},
			"After Redis was unreachable, how long masters wait before declaring peers crashed or evicting participants (everyone re-registers and reconnects first)."},
		{"master.request_timeout", []string{"CHORUS_MASTER_REQUEST_TIMEOUT"}, 10 * time.Second, []Role{RoleMaster},
			"Upper bound of one REST or JSON-RPC request, media node calls included."},
		{"master.departure_delay", []string{"CHORUS_MASTER_DEPARTURE_DELAY"}, 300 * time.Millisecond, []Role{RoleMaster},
			"How long a participant's departure (participantLeft, participantEvicted) is held before the others are told, so that a client leaving with several connections at once (camera and screen) is not told of its own other connections leaving (openvidu-browser reports those as unknown). 0: at once."},
		{"master.edition", []string{"CHORUS_MASTER_EDITION"}, "pro", []Role{RoleMaster},
			"OpenVidu edition announced in every token's edition parameter: ce, pro or enterprise (openvidu-browser and applications enable features by it)."},
		{"master.max_message_bytes", []string{"CHORUS_MASTER_MAX_MESSAGE_BYTES"}, 1 << 20, []Role{RoleMaster},
			"Largest JSON-RPC message accepted on the WebSocket; larger ones close it with status 1009."},

		{"webhook.enabled", []string{"CHORUS_WEBHOOK_ENABLED", "OPENVIDU_WEBHOOK"}, false, []Role{RoleMaster},
			"Post every event to the webhook endpoint (OpenVidu's OPENVIDU_WEBHOOK)."},
		{"webhook.endpoint", []string{"CHORUS_WEBHOOK_ENDPOINT", "OPENVIDU_WEBHOOK_ENDPOINT"}, "", []Role{RoleMaster},
			"URL the events are POSTed to."},
		{"webhook.headers", []string{"CHORUS_WEBHOOK_HEADERS", "OPENVIDU_WEBHOOK_HEADERS"}, []string{}, []Role{RoleMaster},
			`Extra HTTP headers of each POST, each "Name: value" (a JSON array in the environment, as in OpenVidu).`},
		{"webhook.events", []string{"CHORUS_WEBHOOK_EVENTS", "OPENVIDU_WEBHOOK_EVENTS"}, defaultWebhookEvents(), []Role{RoleMaster},
			"Events posted to the webhook (a JSON array in the environment); the CDR file gets them all."},
		{"webhook.attempt_timeout", []string{"CHORUS_WEBHOOK_ATTEMPT_TIMEOUT"}, 10 * time.Second, []Role{RoleMaster},
			"Timeout of one POST attempt."},
		{"webhook.deadline", []string{"CHORUS_WEBHOOK_DEADLINE"}, 5 * time.Minute, []Role{RoleMaster},
			"How long an event is retried (exponential backoff with jitter) before it goes to the dead-letter stream."},
		{"webhook.retry_wait_min", []string{"CHORUS_WEBHOOK_RETRY_WAIT_MIN"}, 250 * time.Millisecond, []Role{RoleMaster},
			"Shortest wait between two attempts."},
		{"webhook.retry_wait_max", []string{"CHORUS_WEBHOOK_RETRY_WAIT_MAX"}, 10 * time.Second, []Role{RoleMaster},
			"Longest wait between two attempts."},
		{"cdr.enabled", []string{"CHORUS_CDR_ENABLED", "OPENVIDU_CDR"}, false, []Role{RoleMaster},
			"Write every event to a CDR file (JSON Lines) on the master that delivers it (OpenVidu's OPENVIDU_CDR)."},
		{"cdr.path", []string{"CHORUS_CDR_PATH", "OPENVIDU_CDR_PATH"}, "/opt/openvidu/cdr", []Role{RoleMaster},
			"Directory of the CDR files: CDR.<date>_<start time>.<master id>.log, one per day, kept 30 days."},
		{"events.max_len", []string{"CHORUS_EVENTS_MAX_LEN"}, 100000, []Role{RoleMaster, RoleTool},
			"Most undelivered events kept per session (and for the cluster); beyond it the oldest are dropped."},
		{"events.dead_letter_max_len", []string{"CHORUS_EVENTS_DEAD_LETTER_MAX_LEN"}, 100000, []Role{RoleMaster, RoleTool},
			"Most events kept in the dead-letter stream."},
		{"events.lease_ttl", []string{"CHORUS_EVENTS_LEASE_TTL"}, 5 * time.Second, []Role{RoleMaster},
			"How long a master's claim on delivering a session's events lasts without renewal; a crashed master's events move on after it."},

		{"media_nodes.provider", []string{"CHORUS_MEDIA_NODES_PROVIDER"}, "static", []Role{RoleMaster},
			"How media nodes are launched and stopped: static (they register themselves, or POST /media-nodes {\"uri\"}; the operator starts them), process (masters start chorus media processes on their machine) or docker (containers through the Docker Engine API)."},
		{"media_nodes.auto_adopt", []string{"CHORUS_MEDIA_NODES_AUTO_ADOPT"}, true, []Role{RoleMaster},
			"Adopt media nodes that register themselves (launching, then running). Off: they wait for POST /media-nodes {\"uri\"} or PUT /media-nodes, as OpenVidu on premises."},
		{"media_nodes.launch_timeout", []string{"CHORUS_MEDIA_NODES_LAUNCH_TIMEOUT"}, 60 * time.Second, []Role{RoleMaster},
			"A launched media node that has not reported within this time ends in failed (and is stopped)."},
		{"media_nodes.crash_window", []string{"CHORUS_MEDIA_NODES_CRASH_WINDOW"}, 3 * time.Second, []Role{RoleMaster},
			"A media node silent this long, and failing direct health checks, is declared crashed (OpenVidu's 3 s of silent retries)."},
		{"media_nodes.reconnection_timeout", []string{"CHORUS_MEDIA_NODES_RECONNECTION_TIMEOUT", "OPENVIDU_PRO_CLUSTER_RECONNECTION_TIMEOUT"},
			0 * time.Second, []Role{RoleMaster},
			"How long a crashed media node may take to come back (nodeRecovered) before it is terminated; -1 waits forever; 0 chooses as OpenVidu: forever for static nodes without autoscaling, else 3 s (bare number: seconds)."},
		{"media_nodes.crash_policy", []string{"CHORUS_MEDIA_NODES_CRASH_POLICY"}, "migrate", []Role{RoleMaster},
			"What happens to the sessions of a crashed media node: migrate (moved to a healthy node; clients reconnect their media by themselves) or close (closed with reason nodeCrashed, as OpenVidu 2)."},
		{"media_nodes.max_load", []string{"CHORUS_MEDIA_NODES_MAX_LOAD"}, 90.0, []Role{RoleMaster},
			"Load ceiling (CPU %, 0-100): a media node at or above it gets no new session while another is below (0: none)."},
		{"media_nodes.hold_timeout", []string{"CHORUS_MEDIA_NODES_HOLD_TIMEOUT"}, 8 * time.Second, []Role{RoleMaster},
			"How long a reconnectStream or prepareReceiveVideoFrom waits for a stream that is moving to another media node (below openvidu-browser's 10 s request timeout)."},
		{"media_nodes.nudge_delay", []string{"CHORUS_MEDIA_NODES_NUDGE_DELAY"}, 2 * time.Second, []Role{RoleMaster},
			"After a migration, when the WebSocket of a publisher that has not re-published is first closed, so that openvidu-browser re-establishes its broken streams at once (see the README). Chrome notices a dead node 5-8 s after it went silent, about 2 s after the crash is declared: earlier closes only risk cutting requests."},
		{"media_nodes.nudge_interval", []string{"CHORUS_MEDIA_NODES_NUDGE_INTERVAL"}, 700 * time.Millisecond, []Role{RoleMaster},
			"Time between two such closes."},
		{"media_nodes.nudge_count", []string{"CHORUS_MEDIA_NODES_NUDGE_COUNT"}, 10, []Role{RoleMaster},
			"Most such closes per publisher, each skipped while its socket is younger than 800 ms or carried a request in the last 400 ms (0: none; media then returns on openvidu-browser's own timers)."},
		{"media_nodes.ice_tcp", []string{"CHORUS_MEDIA_NODES_ICE_TCP"}, true, []Role{RoleMaster},
			"Launched media nodes (process and docker providers) also listen for ICE-TCP: the process provider gives each a free TCP port, the docker provider publishes its UDP port's number over TCP too."},
		{"media_nodes.process.binary", []string{"CHORUS_MEDIA_NODES_PROCESS_BINARY"}, "", []Role{RoleMaster},
			"Process provider: the chorus binary the nodes run (default: the master's own)."},
		{"media_nodes.process.bind_ip", []string{"CHORUS_MEDIA_NODES_PROCESS_BIND_IP"}, "127.0.0.1", []Role{RoleMaster},
			"Process provider: the IP launched nodes bind their media UDP (and ICE-TCP) port to (and announce unless public_ips is set)."},
		{"media_nodes.process.public_ips", []string{"CHORUS_MEDIA_NODES_PROCESS_PUBLIC_IPS"}, []string{}, []Role{RoleMaster},
			"Process provider: the IPs launched nodes announce in ICE candidates."},
		{"media_nodes.process.log_dir", []string{"CHORUS_MEDIA_NODES_PROCESS_LOG_DIR"}, "", []Role{RoleMaster},
			"Process provider: directory of the launched nodes' logs, <node id>.log (default: the system's temporary directory)."},
		{"media_nodes.docker.host", []string{"CHORUS_MEDIA_NODES_DOCKER_HOST"}, "", []Role{RoleMaster},
			"Docker provider: the Engine API address (default: DOCKER_HOST, else unix:///var/run/docker.sock)."},
		{"media_nodes.docker.image", []string{"CHORUS_MEDIA_NODES_DOCKER_IMAGE"}, "", []Role{RoleMaster},
			"Docker provider: the image launched nodes run (default: the image of the master's own container)."},
		{"media_nodes.docker.network", []string{"CHORUS_MEDIA_NODES_DOCKER_NETWORK"}, "", []Role{RoleMaster},
			"Docker provider: the network launched nodes join (default: the master's own container's)."},
		{"media_nodes.docker.project", []string{"CHORUS_MEDIA_NODES_DOCKER_PROJECT"}, "", []Role{RoleMaster},
			"Docker provider: the compose project launched nodes are labelled with, so that docker compose down --remove-orphans removes them (default: the master's own container's)."},
		{"media_nodes.docker.publish_ip", []string{"CHORUS_MEDIA_NODES_DOCKER_PUBLISH_IP"}, "127.0.0.1", []Role{RoleMaster},
			"Docker provider: the host IP launched nodes' UDP (and ICE-TCP) ports are published on (0.0.0.0: every interface)."},
		{"media_nodes.docker.public_ips", []string{"CHORUS_MEDIA_NODES_DOCKER_PUBLIC_IPS"}, []string{"127.0.0.1"}, []Role{RoleMaster},
			"Docker provider: the IPs launched nodes announce in ICE candidates (the host's address as clients reach it)."},
		{"media_nodes.docker.udp_port_min", []string{"CHORUS_MEDIA_NODES_DOCKER_UDP_PORT_MIN"}, 40100, []Role{RoleMaster},
			"Docker provider: lowest UDP port of launched nodes (each publishes one port, the same number inside and out, and with media_nodes.ice_tcp the same number over TCP)."},
		{"media_nodes.docker.udp_port_max", []string{"CHORUS_MEDIA_NODES_DOCKER_UDP_PORT_MAX"}, 40199, []Role{RoleMaster},
			"Docker provider: highest UDP port of launched nodes."},
		{"media_nodes.docker.cpus", []string{"CHORUS_MEDIA_NODES_DOCKER_CPUS"}, 2.0, []Role{RoleMaster},
			"Docker provider: CPUs each launched node may use (docker run --cpus; the node's 100 % load is all of them). 0: no limit."},
		{"media_nodes.docker.memory_mb", []string{"CHORUS_MEDIA_NODES_DOCKER_MEMORY_MB"}, 2048, []Role{RoleMaster},
			"Docker provider: memory limit of each launched node in MiB, swap included (docker run --memory and --memory-swap). 0: no limit."},
		{"media_nodes.docker.pids_limit", []string{"CHORUS_MEDIA_NODES_DOCKER_PIDS_LIMIT"}, 1024, []Role{RoleMaster},
			"Docker provider: most processes and threads in each launched node (docker run --pids-limit). 0: no limit."},

		{"autoscaling.enabled", []string{"CHORUS_AUTOSCALING_ENABLED", "OPENVIDU_PRO_CLUSTER_AUTOSCALING"}, false, []Role{RoleMaster},
			"Autoscale the media nodes (OpenVidu Pro's algorithm; see the README)."},
		{"autoscaling.max_nodes", []string{"CHORUS_AUTOSCALING_MAX_NODES", "OPENVIDU_PRO_CLUSTER_AUTOSCALING_MAX_NODES"}, 2, []Role{RoleMaster},
			"Most media nodes the autoscaler keeps."},
		{"autoscaling.min_nodes", []string{"CHORUS_AUTOSCALING_MIN_NODES", "OPENVIDU_PRO_CLUSTER_AUTOSCALING_MIN_NODES"}, 1, []Role{RoleMaster},
			"Fewest media nodes the autoscaler keeps."},
		{"autoscaling.max_load", []string{"CHORUS_AUTOSCALING_MAX_LOAD", "OPENVIDU_PRO_CLUSTER_AUTOSCALING_MAX_LOAD"}, 70.0, []Role{RoleMaster},
			"Average load (CPU %) above which media nodes are added."},
		{"autoscaling.min_load", []string{"CHORUS_AUTOSCALING_MIN_LOAD", "OPENVIDU_PRO_CLUSTER_AUTOSCALING_MIN_LOAD"}, 20.0, []Role{RoleMaster},
			"Average load (CPU %) below which media nodes are removed."},
		{"autoscaling.interval", []string{"CHORUS_AUTOSCALING_INTERVAL", "OPENVIDU_PRO_CLUSTER_AUTOSCALING_INTERVAL"}, 10 * time.Second, []Role{RoleMaster},
			"How often the autoscaler evaluates the cluster (bare number: seconds)."},
		{"autoscaling.cool_down", []string{"CHORUS_AUTOSCALING_COOL_DOWN"}, 30 * time.Second, []Role{RoleMaster},
			"Least time between two autoscaling decisions: a decision's effect takes a while to show in the load."},
		{"autoscaling.drain", []string{"CHORUS_AUTOSCALING_DRAIN"}, "when-no-sessions", []Role{RoleMaster},
			"How scaled-in nodes leave: when-no-sessions (they wait for their sessions to end, as OpenVidu) or migrate (their sessions move to other nodes)."},

		{"media.id", []string{"CHORUS_MEDIA_ID"}, "", []Role{RoleMedia},
			"Media node id (default: media_ plus a random suffix, new at every start)."},
		{"media.listen", []string{"CHORUS_MEDIA_LISTEN"}, "127.0.0.1:8888", []Role{RoleMedia},
			"Address of the media node's internal HTTP API (masters create endpoints through it)."},
		{"media.internal_url", []string{"CHORUS_MEDIA_INTERNAL_URL"}, "", []Role{RoleMedia},
			"URL at which masters reach this node's internal API (default: http://<listen address>)."},
		{"media.metrics_listen", []string{"CHORUS_MEDIA_METRICS_LISTEN"}, "", []Role{RoleMedia},
			"Address serving the node's Prometheus metrics (GET /metrics) without authentication, for a scraper on a private network (e.g. 10.0.0.5:9101); they are then no longer on media.listen. Empty: /metrics on media.listen, behind the cluster secret (Authorization: Bearer <cluster secret>)."},
		{"media.udp_port", []string{"CHORUS_MEDIA_UDP_PORT"}, 40000, []Role{RoleMedia},
			"The single UDP port every ICE connection of this node uses (UDP mux)."},
		{"media.tcp_port", []string{"CHORUS_MEDIA_TCP_PORT"}, 40000, []Role{RoleMedia},
			"The single TCP port of the node's passive ICE-TCP candidates (RFC 6544), for participants whose network blocks UDP; announced like the UDP port, at a lower priority. 0: a port chosen by the system (tests); -1: ICE-TCP off."},
		{"media.bind_ip", []string{"CHORUS_MEDIA_BIND_IP"}, "0.0.0.0", []Role{RoleMedia},
			"Local IP the UDP and TCP ports bind to."},
		{"media.public_ips", []string{"CHORUS_MEDIA_PUBLIC_IPS", "CHORUS_MEDIA_PUBLIC_IP"}, []string{}, []Role{RoleMedia},
			"IPs announced in ICE candidates instead of the local ones (NAT 1:1, as behind Docker or cloud NAT). Default: bind_ip when it is not 0.0.0.0, else every local interface."},
		{"media.heartbeat_interval", []string{"CHORUS_MEDIA_HEARTBEAT_INTERVAL"}, time.Second, []Role{RoleMedia},
			"How often the node refreshes its registration and load in Redis."},
		{"media.reconcile_interval", []string{"CHORUS_MEDIA_RECONCILE_INTERVAL"}, 5 * time.Second, []Role{RoleMedia},
			"How often the node compares its peer connections with the cluster state."},
		{"media.reconcile_grace", []string{"CHORUS_MEDIA_RECONCILE_GRACE"}, 20 * time.Second, []Role{RoleMedia},
			"How long a peer connection may stay unreferenced by the cluster state before the node releases it."},
		{"media.retransmission_buffer", []string{"CHORUS_MEDIA_RETRANSMISSION_BUFFER"}, 512, []Role{RoleMedia},
			"Packets kept per published track to answer subscribers' NACKs (power of two)."},
		{"media.batch_writes", []string{"CHORUS_MEDIA_BATCH_WRITES"}, true, []Role{RoleMedia},
			"Send queued media packets in batches, one sendmmsg system call for many (off: one sendto per packet)."},

		{"proxy.listen", []string{"CHORUS_PROXY_LISTEN"}, "127.0.0.1:4443", []Role{RoleProxy},
			"Public address of the proxy: REST API, WebSocket and the demo page."},
		{"proxy.masters", []string{"CHORUS_PROXY_MASTERS"}, []string{}, []Role{RoleProxy},
			"Static master URLs (comma-separated). Empty: discover masters from their registrations in Redis."},
		{"proxy.health_interval", []string{"CHORUS_PROXY_HEALTH_INTERVAL"}, 250 * time.Millisecond, []Role{RoleProxy},
			"Interval of the active health check of every master."},
		{"proxy.health_timeout", []string{"CHORUS_PROXY_HEALTH_TIMEOUT"}, 500 * time.Millisecond, []Role{RoleProxy},
			"Timeout of one active health check."},
		{"proxy.unhealthy_after", []string{"CHORUS_PROXY_UNHEALTHY_AFTER"}, 2, []Role{RoleProxy},
			"Consecutive failed checks (active or passive) after which a master gets no new requests."},
		{"proxy.request_timeout", []string{"CHORUS_PROXY_REQUEST_TIMEOUT"}, 30 * time.Second, []Role{RoleProxy},
			"Time a master has to answer a proxied HTTP request before the proxy answers 504."},
		{"proxy.trusted_proxies", []string{"CHORUS_PROXY_TRUSTED_PROXIES"}, []string{}, []Role{RoleMaster, RoleProxy},
			"CIDRs or IPs of proxies in front of the Chorus proxy (a load balancer) whose X-Forwarded-For is believed: from them the proxy keeps the incoming chain and appends the peer, from anyone else it replaces it; masters skip these addresses from the end of the chain when they report a participant's IP, and the demo's rate limit counts the client found so. Empty: nobody's."},
		{"proxy.demo.enabled", []string{"CHORUS_PROXY_DEMO_ENABLED"}, false, []Role{RoleProxy},
			"Serve the demo page at / and its token endpoint POST /demo/token, which hands PUBLISHER tokens to anyone reaching the proxy, into sessions of its own (ids starting with demo_) only: keep it off in production (chorus dev turns it on)."},
		{"proxy.demo.rate_limit", []string{"CHORUS_PROXY_DEMO_RATE_LIMIT"}, 10, []Role{RoleProxy},
			"Token requests per minute the demo answers each client IP (an IPv6 client by its /64; X-Forwarded-For only from proxy.trusted_proxies); beyond it 429 with Retry-After."},
		{"proxy.demo.rate_burst", []string{"CHORUS_PROXY_DEMO_RATE_BURST"}, 5, []Role{RoleProxy},
			"Token requests a client IP may make at once before proxy.demo.rate_limit applies."},
		{"proxy.demo.assets_dir", []string{"CHORUS_PROXY_DEMO_ASSETS_DIR"}, "web", []Role{RoleProxy},
			"Directory holding demo/index.html and node_modules/openvidu-browser (run make web)."},
		{"proxy.tls.mode", []string{"CHORUS_PROXY_TLS_MODE"}, "off", []Role{RoleProxy},
			"HTTPS on proxy.listen: off (plain HTTP), file (cert_file and key_file) or self-signed (a certificate generated on first start and kept in self_signed_dir, for LAN use: browsers open the camera only over HTTPS)."},
		{"proxy.tls.cert_file", []string{"CHORUS_PROXY_TLS_CERT_FILE"}, "", []Role{RoleProxy},
			"PEM certificate chain (mode file)."},
		{"proxy.tls.key_file", []string{"CHORUS_PROXY_TLS_KEY_FILE"}, "", []Role{RoleProxy},
			"PEM private key (mode file)."},
		{"proxy.tls.self_signed_dir", []string{"CHORUS_PROXY_TLS_SELF_SIGNED_DIR"}, "/var/lib/chorus/tls", []Role{RoleProxy},
			"Where the self-signed certificate and key are written on first start and read afterwards (cert.pem, key.pem)."},
		{"proxy.tls.hosts", []string{"CHORUS_PROXY_TLS_HOSTS"}, []string{"localhost", "127.0.0.1"}, []Role{RoleProxy},
			"Names and IPs the self-signed certificate is valid for (add the LAN IP or name clients use)."},

		{"turn.urls", []string{"CHORUS_TURN_URLS"}, []string{}, []Role{RoleMaster},
			"TURN server URLs handed to every participant in joinRoom's customIceServers with a fresh credential " +
				"(turn:host:3478?transport=udp, turn:host:3478?transport=tcp, turns:host:5349?transport=tcp); " +
				"empty: none. A connection created with its own customIceServers gets those instead."},
		{"turn.secret", []string{"CHORUS_TURN_SECRET"}, "", []Role{RoleMaster, RoleTurn},
			"Shared secret of TURN credentials (coturn's static-auth-secret): masters mint with it, TURN servers check with it."},
		{"turn.credential_ttl", []string{"CHORUS_TURN_CREDENTIAL_TTL"}, 24 * time.Hour, []Role{RoleMaster},
			"How long a participant's TURN credential stays valid."},
		{"turn.realm", []string{"CHORUS_TURN_REALM"}, "chorus", []Role{RoleTurn},
			"TURN realm (RFC 8489 long-term credentials)."},
		{"turn.listen_ip", []string{"CHORUS_TURN_LISTEN_IP"}, "0.0.0.0", []Role{RoleTurn},
			"IP the TURN listeners bind."},
		{"turn.port", []string{"CHORUS_TURN_PORT"}, 3478, []Role{RoleTurn},
			"TURN (and STUN) port over UDP and TCP; 0: ephemeral, -1: off."},
		{"turn.tls_port", []string{"CHORUS_TURN_TLS_PORT"}, 5349, []Role{RoleTurn},
			"TURN over TLS port when turn.tls.mode is not off (443 in production, where firewalls let only HTTPS out)."},
		{"turn.tls.mode", []string{"CHORUS_TURN_TLS_MODE"}, "off", []Role{RoleTurn},
			"TURN over TLS: off, file (turn.tls.cert_file, turn.tls.key_file) or self-signed."},
		{"turn.tls.cert_file", []string{"CHORUS_TURN_TLS_CERT_FILE"}, "", []Role{RoleTurn},
			"PEM certificate chain (mode file)."},
		{"turn.tls.key_file", []string{"CHORUS_TURN_TLS_KEY_FILE"}, "", []Role{RoleTurn},
			"PEM private key (mode file)."},
		{"turn.tls.self_signed_dir", []string{"CHORUS_TURN_TLS_SELF_SIGNED_DIR"}, "/var/lib/chorus/turn-tls", []Role{RoleTurn},
			"Where the self-signed certificate and key are kept (mode self-signed)."},
		{"turn.tls.hosts", []string{"CHORUS_TURN_TLS_HOSTS"}, []string{"localhost", "127.0.0.1"}, []Role{RoleTurn},
			"Names and IPs the self-signed certificate is valid for."},
		{"turn.relay_ip", []string{"CHORUS_TURN_RELAY_IP"}, "", []Role{RoleTurn},
			"IP announced for relayed addresses: the address media nodes send to (required)."},
		{"turn.relay_bind_ip", []string{"CHORUS_TURN_RELAY_BIND_IP"}, "", []Role{RoleTurn},
			"IP relay sockets bind (default: any address of turn.relay_ip's family)."},
		{"turn.relay_port_min", []string{"CHORUS_TURN_RELAY_PORT_MIN"}, 49152, []Role{RoleTurn},
			"Lowest relay port (both 0: ephemeral ports)."},
		{"turn.relay_port_max", []string{"CHORUS_TURN_RELAY_PORT_MAX"}, 65535, []Role{RoleTurn},
			"Highest relay port."},
		{"turn.max_allocations_per_user", []string{"CHORUS_TURN_MAX_ALLOCATIONS_PER_USER"}, 32, []Role{RoleTurn},
			"Allocations one participant may hold at once (one per peer connection and transport tried); past it: 486."},
		{"turn.max_bitrate_per_allocation", []string{"CHORUS_TURN_MAX_BITRATE_PER_ALLOCATION"}, 5_000_000, []Role{RoleTurn},
			"Relayed bits per second per allocation and direction; excess is dropped. Negative: no cap."},
		{"turn.peer_refresh_interval", []string{"CHORUS_TURN_PEER_REFRESH_INTERVAL"}, 2 * time.Second, []Role{RoleTurn},
			"How often a TURN server rereads the media nodes' addresses it may relay to (it relays to nothing else)."},
	}
}
