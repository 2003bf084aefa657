package clientip

import (
	"net/http"
	"testing"
)

func TestClient(t *testing.T) {
	lb, err := ParseTrusted([]string{"10.0.0.0/8", "192.0.2.7", " 2001:db8::/32 "})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		trusted Trusted
		hops    []string
		want    string
	}{
		{"no proxy", lb, []string{"203.0.113.9"}, "203.0.113.9"},
		{"untrusted peer: its header is ignored", lb, []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"trusted balancer", lb, []string{"203.0.113.9", "10.1.2.3"}, "203.0.113.9"},
		{"two trusted hops", lb, []string{"203.0.113.9", "192.0.2.7", "10.1.2.3"}, "203.0.113.9"},
		{"forged entry before the real client", lb, []string{"1.2.3.4", "203.0.113.9", "10.1.2.3"}, "203.0.113.9"},
		{"every hop trusted", lb, []string{"10.9.9.9", "10.1.2.3"}, "10.9.9.9"},
		{"IPv6 trusted", lb, []string{"2001:db8:1::5", "2001:db8::1"}, "2001:db8:1::5"},
		{"IPv4-mapped trusted peer", lb, []string{"203.0.113.9", "::ffff:10.1.2.3"}, "203.0.113.9"},
		{"garbage behind a trusted hop", lb, []string{"not-an-ip", "10.1.2.3"}, "10.1.2.3"},
		{"nobody trusted", Trusted{}, []string{"203.0.113.9", "10.1.2.3"}, "10.1.2.3"},
		{"nothing", lb, nil, ""},
	} {
		if got := tc.trusted.Client(tc.hops); got != tc.want {
			t.Errorf("%s: Client(%v) = %q, want %q", tc.name, tc.hops, got, tc.want)
		}
	}
}

func TestParseTrustedRefusesGarbage(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0"} {
		if _, err := ParseTrusted([]string{bad}); err == nil {
			t.Errorf("ParseTrusted(%q) accepted it", bad)
		}
	}
}

func TestHops(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.1.2.3:5555"
	r.Header.Add("X-Forwarded-For", "1.2.3.4, 203.0.113.9")
	r.Header.Add("X-Forwarded-For", "192.0.2.7")
	got := Hops(r)
	want := []string{"1.2.3.4", "203.0.113.9", "192.0.2.7", "10.1.2.3"}
	if len(got) != len(want) {
		t.Fatalf("Hops = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Hops = %v, want %v", got, want)
		}
	}
}
