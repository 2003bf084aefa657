package metrics

import (
	"encoding/json"
	"testing"
)

// TestTargetGroups: each target is a group of its own with its role, id,
// scheme and metrics path; a URL without a host, or of another scheme, is
// left out; no target is an empty array, not null.
func TestTargetGroups(t *testing.T) {
	tests := []struct {
		name string
		in   []Target
		want string
	}{
		{"none", nil, `[]`},
		{"master and media node", []Target{
			{Role: "master", ID: "master_1", URL: "http://127.0.0.1:5443"},
			{Role: "media", ID: "media_x", URL: "https://media1:8888/"},
		}, `[{"targets":["127.0.0.1:5443"],"labels":{"__metrics_path__":"/metrics","__scheme__":"http","chorus_id":"master_1","role":"master"}},` +
			`{"targets":["media1:8888"],"labels":{"__metrics_path__":"/metrics","__scheme__":"https","chorus_id":"media_x","role":"media"}}]`},
		{"path prefix", []Target{{Role: "master", ID: "m", URL: "http://lb:80/chorus/m1"}},
			`[{"targets":["lb:80"],"labels":{"__metrics_path__":"/chorus/m1/metrics","__scheme__":"http","chorus_id":"m","role":"master"}}]`},
		{"unusable URLs", []Target{{Role: "media", ID: "a", URL: ""}, {Role: "media", ID: "b", URL: "127.0.0.1:8888"},
			{Role: "media", ID: "c", URL: "ftp://h:1"}, {Role: "media", ID: "d", URL: "http://%zz"}}, `[]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(TargetGroups(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != tc.want {
				t.Errorf("got  %s\nwant %s", raw, tc.want)
			}
		})
	}
}
