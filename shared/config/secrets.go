package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Development values that this repository ships (chorus dev, the
// loopback-only docker-compose.yml, configs/). Anyone can read them, so a
// process whose listener is reachable from beyond this machine refuses them
// (see (*Config).Exposed).
const (
	// DevSecret is OpenVidu's own example secret, the default of chorus dev
	// and of docker-compose.yml.
	DevSecret = "MY_SECRET"
	// DevClusterSecret is docker-compose.yml's default cluster secret.
	DevClusterSecret = "DEV_CLUSTER_SECRET_CHANGE_ME"
	// DevRedisPassword is docker-compose.yml's default Redis password.
	DevRedisPassword = "DEV_REDIS_PASSWORD_CHANGE_ME"
	// DevTurnSecret is docker-compose.yml's default TURN secret.
	DevTurnSecret = "DEV_TURN_SECRET_CHANGE_ME"
)

// MinExposedSecretLength is the shortest secret or cluster secret a process
// reachable from beyond this machine accepts. OpenVidu only refuses an
// empty secret; 16 characters of its alphabet (64 symbols) carry 96 bits
// when drawn at random.
const MinExposedSecretLength = 16

// minExposedSecretVariety is the fewest distinct characters such a secret
// may have ("aaaaaaaaaaaaaaaa" is long but guessable).
const minExposedSecretVariety = 6

// secretHowTo says how to make a secret, in every refusal.
const secretHowTo = "use a random value of at least 16 characters from a-z, A-Z, 0-9, '-' and '_' (e.g. the output of `openssl rand -hex 24`)"

// SecretProblem says why value cannot be the secret described by what (the
// setting and how to set it, e.g. "secret (OPENVIDU_SECRET, CHORUS_SECRET or
// --secret)"), or returns "" when it can. Everywhere, a secret must be
// non-empty and use OpenVidu's alphabet: OpenVidu 2's OPENVIDU_SECRET
// "Cannot be empty and must contain only alphanumeric characters [a-zA-Z0-9],
// hypens ("-") and underscores ("_")" (openvidu-server's OpenviduConfig).
// When exposed (the process is reachable from beyond this machine), it must
// also not be one of the development values shipped here (DevSecret,
// DevClusterSecret, DevRedisPassword, DevTurnSecret, in any case), and be at least
// MinExposedSecretLength characters long with at least 6 distinct ones.
func SecretProblem(what, value string, exposed bool) string {
	if value == "" {
		return fmt.Sprintf("%s is empty: %s", what, secretHowTo)
	}
	for _, r := range value {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Sprintf("%s must contain only alphanumeric characters [a-zA-Z0-9], hyphens (\"-\") and underscores (\"_\"), as OpenVidu's OPENVIDU_SECRET: %s", what, secretHowTo)
		}
	}
	if !exposed {
		return ""
	}
	for _, dev := range []string{DevSecret, DevClusterSecret, DevRedisPassword, DevTurnSecret} {
		if strings.EqualFold(value, dev) {
			return fmt.Sprintf("%s is %s, a development value published in Chorus's repository: it is refused on a listener reachable from other machines; %s", what, dev, secretHowTo)
		}
	}
	if len(value) < MinExposedSecretLength {
		return fmt.Sprintf("%s has %d characters: too short for a listener reachable from other machines; %s", what, len(value), secretHowTo)
	}
	distinct := map[rune]bool{}
	for _, r := range value {
		distinct[r] = true
	}
	if len(distinct) < minExposedSecretVariety {
		return fmt.Sprintf("%s has only %d distinct characters: too easy to guess for a listener reachable from other machines; %s", what, len(distinct), secretHowTo)
	}
	return ""
}

// IsLoopback reports whether a listener bound to host (a listen address's
// host part, or a published IP) is reachable from this machine only: a
// loopback IP or "localhost". An empty host, 0.0.0.0 and :: mean every
// interface; a host name other than localhost is taken as reachable.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// listenOf is the address the role's main listener binds.
func (c *Config) listenOf(role Role) (key, addr string) {
	switch role {
	case RoleMaster:
		return "master.listen", c.Master.Listen
	case RoleMedia:
		return "media.listen", c.Media.Listen
	case RoleProxy:
		return "proxy.listen", c.Proxy.Listen
	case RoleTurn:
		// Every TURN listener (UDP, TCP, TLS) binds turn.listen_ip.
		return "turn.listen_ip", net.JoinHostPort(c.Turn.ListenIP, strconv.Itoa(c.Turn.Port))
	}
	return "", ""
}

// Exposed reports whether the role's listener can be reached from beyond
// this machine, and describes it for messages. published_ip, when set,
// stands for the listen address: a process in a container binds 0.0.0.0
// there, while Docker publishes its port (or the proxy's, in front of it) on
// published_ip only. A listen address that does not parse counts as
// exposed. Roles without a listener are never exposed.
func (c *Config) Exposed(role Role) (bool, string) {
	key, addr := c.listenOf(role)
	if key == "" {
		return false, ""
	}
	if c.PublishedIP != "" {
		return !IsLoopback(c.PublishedIP), fmt.Sprintf("published_ip %s (%s %s)", c.PublishedIP, key, addr)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true, fmt.Sprintf("%s %q", key, addr)
	}
	return !IsLoopback(host), fmt.Sprintf("%s %s", key, addr)
}

// SecretProblems returns what is wrong with the secrets the role uses, each
// saying how to set it right: OpenVidu's secret (masters; proxies when they
// have one or serve the demo), the cluster secret (masters and media nodes;
// never the OpenVidu secret once exposed, since media nodes hold it), the
// TURN secret (TURN servers; masters whose turn.urls name TURN servers: who
// knows it mints credentials for the relays; never the OpenVidu or cluster
// secret once exposed, since TURN servers hold it) and the Redis password
// (never the development one once exposed). See SecretProblem for the
// rules; Validate includes these problems.
func (c *Config) SecretProblems(role Role) []string {
	exposed, where := c.Exposed(role)
	var problems []string
	add := func(p string) {
		if p != "" {
			if exposed {
				p += " [" + where + " is reachable from other machines]"
			}
			problems = append(problems, p)
		}
	}
	const secretWhat = "secret (OPENVIDU_SECRET, CHORUS_SECRET or --secret)"
	const clusterWhat = "cluster_secret (CHORUS_CLUSTER_SECRET or --cluster-secret, the same on every master and media node)"
	const turnWhat = "turn.secret (CHORUS_TURN_SECRET or --turn-secret, the same on every master and TURN server)"
	turnSecret := func() {
		add(SecretProblem(turnWhat, c.Turn.Secret, exposed))
		if exposed && c.Turn.Secret != "" && (c.Turn.Secret == c.Secret || c.Turn.Secret == c.ClusterSecret) {
			add("turn.secret (CHORUS_TURN_SECRET) equals the OpenVidu secret or the cluster secret: TURN servers hold the TURN secret, so give it a value of its own")
		}
	}
	switch role {
	case RoleMaster:
		add(SecretProblem(secretWhat, c.Secret, exposed))
		add(SecretProblem(clusterWhat, c.ClusterSecret, exposed))
		if exposed && c.ClusterSecret != "" && c.ClusterSecret == c.Secret {
			add("cluster_secret (CHORUS_CLUSTER_SECRET) equals the OpenVidu secret: media nodes hold the cluster secret, so give it a value of its own")
		}
		if c.Turn.namesTURNServers() {
			turnSecret()
		}
	case RoleTurn:
		turnSecret()
	case RoleProxy:
		if c.Secret != "" || c.Proxy.Demo.Enabled {
			add(SecretProblem("secret (OPENVIDU_SECRET, CHORUS_SECRET or --secret; the demo's token endpoint uses it)", c.Secret, exposed))
		}
	case RoleMedia:
		add(SecretProblem(clusterWhat, c.ClusterSecret, exposed))
	default:
		return nil
	}
	if exposed && strings.EqualFold(c.Redis.Password, DevRedisPassword) {
		add(fmt.Sprintf("redis.password (CHORUS_REDIS_PASSWORD) is %s, docker-compose.yml's development password: set CHORUS_REDIS_PASSWORD (for docker compose, in .env) to a random value, e.g. the output of `openssl rand -hex 24`", DevRedisPassword))
	}
	return problems
}

// namesTURNServers reports whether turn.urls has a turn: or turns: URL
// (masters then mint credentials with turn.secret).
func (t Turn) namesTURNServers() bool {
	for _, u := range t.URLs {
		if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
			return true
		}
	}
	return false
}

// ErrUnsafeSecrets is what CheckSecrets wraps.
var ErrUnsafeSecrets = errors.New("refusing to start with these secrets")

// CheckSecrets returns nil when the role's secrets are fit for where it
// listens, else an error wrapping ErrUnsafeSecrets that lists every problem
// (SecretProblems). The roles call it before they bind anything, so that a
// program embedding them is held to the same rules as `chorus <role>`.
func (c *Config) CheckSecrets(role Role) error {
	problems := c.SecretProblems(role)
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s %w:\n  - %s", role, ErrUnsafeSecrets, strings.Join(problems, "\n  - "))
}
