package config

import (
	"strings"
	"testing"
)

// strong is a secret every rule accepts.
const strong = "f3a9c1d27be84c06a5d1e9f4"

func TestSecretProblem(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		exposed bool
		want    string // a part of the problem; "" when none
	}{
		{"empty on loopback", "", false, "is empty"},
		{"empty exposed", "", true, "is empty"},
		{"OpenVidu's alphabet on loopback", "my secret!", false, "only alphanumeric characters"},
		{"OpenVidu's alphabet exposed", strong + "+/=", true, "only alphanumeric characters"},
		{"the development secret on loopback", DevSecret, false, ""},
		{"the development secret exposed", DevSecret, true, "development value"},
		{"in any case", "my_secret", true, "development value"},
		{"compose's cluster secret exposed", DevClusterSecret, true, "development value"},
		{"compose's Redis password exposed", DevRedisPassword, true, "development value"},
		{"compose's TURN secret exposed", DevTurnSecret, true, "development value"},
		{"short on loopback", "s", false, ""},
		{"short exposed", "Abc-123_xyz", true, "11 characters: too short"},
		{"long but monotonous", "abababababababababab", true, "only 2 distinct characters"},
		{"strong exposed", strong, true, ""},
		{"16 characters", "0123456789abcdef", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SecretProblem("secret (OPENVIDU_SECRET)", tt.value, tt.exposed)
			if tt.want == "" {
				if got != "" {
					t.Fatalf("refused: %s", got)
				}
				return
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("problem %q, want one containing %q", got, tt.want)
			}
			// Every refusal names the setting and says how to make a good one.
			for _, part := range []string{"OPENVIDU_SECRET", "openssl rand -hex 24"} {
				if !strings.Contains(got, part) {
					t.Errorf("problem %q does not say %q", got, part)
				}
			}
		})
	}
}

func TestExposed(t *testing.T) {
	tests := []struct {
		role      Role
		listen    string
		published string
		want      bool
	}{
		{RoleMaster, "127.0.0.1:5443", "", false},
		{RoleMaster, "localhost:5443", "", false},
		{RoleMaster, "[::1]:5443", "", false},
		{RoleMaster, "127.0.0.2:5443", "", false},
		{RoleMaster, "0.0.0.0:5443", "", true},
		{RoleMaster, ":5443", "", true},
		{RoleMaster, "[::]:5443", "", true},
		{RoleMaster, "192.168.1.20:5443", "", true},
		{RoleMaster, "video.example.org:5443", "", true},
		{RoleMaster, "garbage", "", true},
		// In a container: Docker publishes the port on the host's loopback only.
		{RoleMaster, "0.0.0.0:5443", "127.0.0.1", false},
		{RoleProxy, "0.0.0.0:4443", "0.0.0.0", true},
		{RoleProxy, "0.0.0.0:4443", "192.168.1.20", true},
		{RoleMedia, "0.0.0.0:8888", "", true},
		{RoleMedia, "127.0.0.1:8888", "", false},
		{RoleTool, "", "", false},
		// The TURN role: its listeners bind turn.listen_ip.
		{RoleTurn, "0.0.0.0", "", true},
		{RoleTurn, "192.168.1.20", "", true},
		{RoleTurn, "127.0.0.1", "", false},
		{RoleTurn, "0.0.0.0", "127.0.0.1", false},
	}
	for _, tt := range tests {
		c := &Config{PublishedIP: tt.published}
		c.Master.Listen, c.Proxy.Listen, c.Media.Listen, c.Turn.ListenIP = tt.listen, tt.listen, tt.listen, tt.listen
		if got, where := c.Exposed(tt.role); got != tt.want {
			t.Errorf("%s on %q published %q: exposed %v (%s), want %v", tt.role, tt.listen, tt.published, got, where, tt.want)
		}
	}
}

// TestExposedRolesRefuseDevelopmentSecrets: the configurations each role
// gets from the environment, validated as `chorus <role>` validates them.
func TestExposedRolesRefuseDevelopmentSecrets(t *testing.T) {
	tests := []struct {
		name string
		role Role
		env  []string
		want []string // parts of the error; none: valid
	}{
		{"master on loopback with the development secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=MY_SECRET", "CHORUS_CLUSTER_SECRET=MY_SECRET"}, nil},
		{"master on 0.0.0.0 with the development secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=MY_SECRET", "CHORUS_CLUSTER_SECRET=" + strong, "CHORUS_MASTER_LISTEN=0.0.0.0:5443"},
			[]string{"secret (OPENVIDU_SECRET, CHORUS_SECRET or --secret) is MY_SECRET", "master.listen 0.0.0.0:5443 is reachable from other machines"}},
		{"master on 0.0.0.0 without a cluster secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=" + strong, "CHORUS_MASTER_LISTEN=0.0.0.0:5443"},
			[]string{"cluster_secret (CHORUS_CLUSTER_SECRET or --cluster-secret, the same on every master and media node) is empty"}},
		{"master on 0.0.0.0 whose cluster secret is the OpenVidu secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=" + strong, "CHORUS_CLUSTER_SECRET=" + strong, "CHORUS_MASTER_LISTEN=0.0.0.0:5443"},
			[]string{"equals the OpenVidu secret"}},
		{"master on 0.0.0.0 with good secrets", RoleMaster,
			[]string{"OPENVIDU_SECRET=" + strong, "CHORUS_CLUSTER_SECRET=" + strong + "x", "CHORUS_MASTER_LISTEN=0.0.0.0:5443"}, nil},
		{"master in a loopback-only compose", RoleMaster,
			[]string{"OPENVIDU_SECRET=MY_SECRET", "CHORUS_CLUSTER_SECRET=" + DevClusterSecret, "CHORUS_REDIS_PASSWORD=" + DevRedisPassword,
				"CHORUS_MASTER_LISTEN=0.0.0.0:5443", "CHORUS_PUBLISHED_IP=127.0.0.1"}, nil},
		{"master in a compose published on the LAN", RoleMaster,
			[]string{"OPENVIDU_SECRET=MY_SECRET", "CHORUS_CLUSTER_SECRET=" + DevClusterSecret, "CHORUS_REDIS_PASSWORD=" + DevRedisPassword,
				"CHORUS_MASTER_LISTEN=0.0.0.0:5443", "CHORUS_PUBLISHED_IP=192.168.1.20"},
			[]string{"is MY_SECRET", "cluster_secret (CHORUS_CLUSTER_SECRET or --cluster-secret, the same on every master and media node) is " + DevClusterSecret,
				"redis.password (CHORUS_REDIS_PASSWORD) is " + DevRedisPassword, "published_ip 192.168.1.20"}},
		{"proxy on 0.0.0.0 with the development secret", RoleProxy,
			[]string{"OPENVIDU_SECRET=MY_SECRET", "CHORUS_PROXY_LISTEN=0.0.0.0:4443"},
			[]string{"is MY_SECRET", "proxy.listen 0.0.0.0:4443"}},
		{"proxy on 0.0.0.0 without a secret nor the demo", RoleProxy,
			[]string{"CHORUS_PROXY_LISTEN=0.0.0.0:4443"}, nil},
		{"proxy serving the demo needs a secret", RoleProxy,
			[]string{"CHORUS_PROXY_DEMO_ENABLED=true"}, []string{"is empty"}},
		{"media node on 0.0.0.0 with a weak cluster secret", RoleMedia,
			[]string{"CHORUS_CLUSTER_SECRET=short", "CHORUS_MEDIA_LISTEN=0.0.0.0:8888"},
			[]string{"5 characters: too short", "media.listen 0.0.0.0:8888"}},
		{"media node needs no OpenVidu secret", RoleMedia,
			[]string{"CHORUS_CLUSTER_SECRET=" + strong, "CHORUS_MEDIA_LISTEN=0.0.0.0:8888"}, nil},
		// The TURN secret: whoever knows it mints credentials for the relays.
		{"TURN server on loopback with the development TURN secret", RoleTurn,
			[]string{"CHORUS_TURN_SECRET=" + DevTurnSecret, "CHORUS_TURN_LISTEN_IP=127.0.0.1", "CHORUS_TURN_RELAY_IP=127.0.0.1"}, nil},
		{"TURN server on 0.0.0.0 with the development TURN secret", RoleTurn,
			[]string{"CHORUS_TURN_SECRET=" + DevTurnSecret, "CHORUS_TURN_RELAY_IP=192.168.1.20"},
			[]string{"turn.secret (CHORUS_TURN_SECRET or --turn-secret, the same on every master and TURN server) is " + DevTurnSecret,
				"turn.listen_ip 0.0.0.0:3478 is reachable from other machines"}},
		{"TURN server on 0.0.0.0 with a short TURN secret", RoleTurn,
			[]string{"CHORUS_TURN_SECRET=short-secret", "CHORUS_TURN_RELAY_IP=192.168.1.20"},
			[]string{"turn.secret (CHORUS_TURN_SECRET or --turn-secret, the same on every master and TURN server) has 12 characters: too short"}},
		{"TURN server without a TURN secret", RoleTurn,
			[]string{"CHORUS_TURN_LISTEN_IP=127.0.0.1", "CHORUS_TURN_RELAY_IP=127.0.0.1"}, []string{"turn.secret (CHORUS_TURN_SECRET or --turn-secret, the same on every master and TURN server) is empty"}},
		{"TURN server in a compose published on the LAN with the development TURN secret", RoleTurn,
			[]string{"CHORUS_TURN_SECRET=" + DevTurnSecret, "CHORUS_TURN_RELAY_IP=192.168.1.20", "CHORUS_PUBLISHED_IP=192.168.1.20"},
			[]string{"is " + DevTurnSecret, "published_ip 192.168.1.20"}},
		{"TURN server in a loopback-only compose", RoleTurn,
			[]string{"CHORUS_TURN_SECRET=" + DevTurnSecret, "CHORUS_TURN_RELAY_IP=127.0.0.1", "CHORUS_PUBLISHED_IP=127.0.0.1",
				"CHORUS_REDIS_PASSWORD=" + DevRedisPassword}, nil},
		{"TURN server on 0.0.0.0 whose TURN secret is the cluster secret", RoleTurn,
			[]string{"CHORUS_TURN_SECRET=" + strong, "CHORUS_CLUSTER_SECRET=" + strong, "CHORUS_TURN_RELAY_IP=192.168.1.20"},
			[]string{"equals the OpenVidu secret or the cluster secret"}},
		{"TURN server on 0.0.0.0 with a good TURN secret", RoleTurn,
			[]string{"CHORUS_TURN_SECRET=" + strong, "CHORUS_TURN_RELAY_IP=192.168.1.20"}, nil},
		{"master on 0.0.0.0 handing TURN servers with the development TURN secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=" + strong, "CHORUS_CLUSTER_SECRET=" + strong + "x", "CHORUS_MASTER_LISTEN=0.0.0.0:5443",
				"CHORUS_TURN_URLS=turn:turn.example.org:3478?transport=udp", "CHORUS_TURN_SECRET=" + DevTurnSecret},
			[]string{"turn.secret (CHORUS_TURN_SECRET or --turn-secret, the same on every master and TURN server) is " + DevTurnSecret}},
		{"master on 0.0.0.0 whose TURN secret is the OpenVidu secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=" + strong, "CHORUS_CLUSTER_SECRET=" + strong + "x", "CHORUS_MASTER_LISTEN=0.0.0.0:5443",
				"CHORUS_TURN_URLS=turns:turn.example.org:443?transport=tcp", "CHORUS_TURN_SECRET=" + strong},
			[]string{"equals the OpenVidu secret or the cluster secret"}},
		{"master handing TURN servers without a TURN secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=MY_SECRET", "CHORUS_CLUSTER_SECRET=MY_SECRET", "CHORUS_TURN_URLS=turn:127.0.0.1:3478"},
			[]string{"turn.secret (CHORUS_TURN_SECRET or --turn-secret, the same on every master and TURN server) is empty"}},
		{"master on loopback handing TURN servers with the development TURN secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=MY_SECRET", "CHORUS_CLUSTER_SECRET=MY_SECRET", "CHORUS_TURN_URLS=turn:127.0.0.1:3478",
				"CHORUS_TURN_SECRET=" + DevTurnSecret}, nil},
		{"master on 0.0.0.0 handing only STUN servers needs no TURN secret", RoleMaster,
			[]string{"OPENVIDU_SECRET=" + strong, "CHORUS_CLUSTER_SECRET=" + strong + "x", "CHORUS_MASTER_LISTEN=0.0.0.0:5443",
				"CHORUS_TURN_URLS=stun:stun.example.org:3478"}, nil},
		{"a published IP must be an IP", RoleMedia,
			[]string{"CHORUS_CLUSTER_SECRET=" + strong, "CHORUS_PUBLISHED_IP=lan"}, []string{`published_ip "lan" is not an IP address`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.role, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate(tt.role)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
		})
	}
}
