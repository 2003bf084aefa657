package metrics

import (
	"net/url"
	"path"
	"strings"
)

// TargetGroup is one entry of Prometheus' HTTP service discovery answer
// (prometheus.io/docs/prometheus/latest/http_sd: a JSON array of these,
// served with status 200): targets as host:port, and labels that every
// series scraped from them gets ("__"-prefixed ones steer the scrape).
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// Target is a Chorus process whose metrics Prometheus should scrape.
type Target struct {
	Role string // master or media
	ID   string // its node id
	// URL is where it serves GET /metrics behind the cluster secret: its
	// internal URL (scheme://host:port[/prefix]).
	URL string
}

// TargetGroups turns targets into HTTP service discovery groups, one per
// target, labelled role and chorus_id, their __scheme__ and
// __metrics_path__ taken from the URL. A target whose URL has no host is
// left out. The answer is never nil (Prometheus reads null as an error).
func TargetGroups(targets []Target) []TargetGroup {
	out := []TargetGroup{}
	for _, t := range targets {
		u, err := url.Parse(t.URL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			continue
		}
		out = append(out, TargetGroup{
			Targets: []string{u.Host},
			Labels: map[string]string{
				"role": t.Role, "chorus_id": t.ID,
				"__scheme__": u.Scheme, "__metrics_path__": path.Join("/", strings.TrimSuffix(u.Path, "/"), "metrics"),
			},
		})
	}
	return out
}
