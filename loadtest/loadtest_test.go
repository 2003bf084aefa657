package loadtest

import (
	"bytes"
	"encoding/xml"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Percentiles
	}{
		{"empty", nil, Percentiles{}},
		{"one", []float64{7}, Percentiles{Count: 1, P50: 7, P99: 7, Max: 7}},
		{"unsorted", []float64{5, 1, 4, 2, 3}, Percentiles{Count: 5, P50: 3, P99: 5, Max: 5}},
		{"hundred", seq(1, 100), Percentiles{Count: 100, P50: 50, P99: 99, Max: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentiles(tc.in); got != tc.want {
				t.Fatalf("percentiles(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func seq(from, to int) []float64 {
	var out []float64
	for i := to; i >= from; i-- {
		out = append(out, float64(i))
	}
	return out
}

func TestLossRatio(t *testing.T) {
	for _, tc := range []struct {
		received, lost uint64
		want           float64
	}{
		{0, 0, 0}, {100, 0, 0}, {99, 1, 0.01}, {0, 5, 1},
	} {
		if got := lossRatio(tc.received, tc.lost); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("lossRatio(%d, %d) = %g, want %g", tc.received, tc.lost, got, tc.want)
		}
	}
}

func TestNodeUsage(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name         string
		a, b         nodeCounters
		cpu, us, pps float64
		ok           bool
	}{
		{"one core busy half the time forwarding 10k pkt/s",
			nodeCounters{at: t0, cpuSeconds: 10, forwarded: 1e6, cpus: 1},
			nodeCounters{at: t0.Add(2 * time.Second), cpuSeconds: 11, forwarded: 1e6 + 2e4, cpus: 1},
			50, 50, 1e4, true},
		{"two cores",
			nodeCounters{at: t0, cpuSeconds: 0, forwarded: 0, cpus: 2},
			nodeCounters{at: t0.Add(time.Second), cpuSeconds: 1, forwarded: 1e5, cpus: 2},
			50, 10, 1e5, true},
		{"restarted node", nodeCounters{at: t0, cpuSeconds: 5, forwarded: 10, cpus: 1},
			nodeCounters{at: t0.Add(time.Second), cpuSeconds: 1, forwarded: 1, cpus: 1}, 0, 0, 0, false},
		{"no time", nodeCounters{at: t0}, nodeCounters{at: t0}, 0, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpu, us, pps, ok := nodeUsage(tc.a, tc.b)
			if ok != tc.ok || math.Abs(cpu-tc.cpu) > 1e-9 || math.Abs(us-tc.us) > 1e-9 || math.Abs(pps-tc.pps) > 1e-9 {
				t.Fatalf("nodeUsage = %g %% %g us %g pkt/s %v, want %g %g %g %v", cpu, us, pps, ok, tc.cpu, tc.us, tc.pps, tc.ok)
			}
		})
	}
}

const nodeMetrics = `# HELP chorus_media_cpu_seconds_total CPU time (user+system) of the media node process.
# TYPE chorus_media_cpu_seconds_total counter
chorus_media_cpu_seconds_total{node="media_1"} 12.5
# HELP chorus_media_cpus CPUs the node process may use.
# TYPE chorus_media_cpus gauge
chorus_media_cpus{node="media_1"} 2
# HELP chorus_media_forwarded_packets_total RTP packets sent to subscribers.
# TYPE chorus_media_forwarded_packets_total counter
chorus_media_forwarded_packets_total{node="media_1"} 123456
# HELP chorus_media_forwarded_bytes_total RTP bytes sent to subscribers.
# TYPE chorus_media_forwarded_bytes_total counter
chorus_media_forwarded_bytes_total{node="media_1"} 98765432
`

func TestParseNodeMetrics(t *testing.T) {
	c, err := parseNodeMetrics(strings.NewReader(nodeMetrics))
	if err != nil {
		t.Fatal(err)
	}
	if c.cpuSeconds != 12.5 || c.forwarded != 123456 || c.forwardedBytes != 98765432 || c.cpus != 2 {
		t.Fatalf("parsed %+v", c)
	}
	if _, err := parseNodeMetrics(strings.NewReader("# TYPE other counter\nother 1\n")); err == nil {
		t.Fatal("metrics of something else than a media node accepted")
	}
	if _, err := parseNodeMetrics(strings.NewReader("garbage{")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func FuzzParseNodeMetrics(f *testing.F) {
	f.Add(nodeMetrics)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseNodeMetrics(strings.NewReader(s))
		if err == nil && c.cpus <= 0 {
			t.Fatalf("accepted metrics with %g CPUs", c.cpus)
		}
	})
}

func TestParseVideo(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Video
		ok   bool
	}{
		{"540x360@30", Video{540, 360, 30}, true},
		{"1280x720@15", Video{1280, 720, 15}, true},
		{"none", Video{}, true},
		{"540x360", Video{}, false},
		{"0x360@30", Video{}, false},
		{"540x360@0", Video{}, false},
		{"axb@c", Video{}, false},
	} {
		got, err := ParseVideo(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseVideo(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Config{URL: "http://localhost:4443", Secret: "s", Sessions: 1, Participants: 4, Video: Video{540, 360, 30}, Ramp: 2, Duration: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Config{URL: "localhost", Participants: 3, Publishers: 1, Ramp: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{"--url", "--secret", "--sessions", "exclusive", "no media", "--ramp", "--duration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestWriteSVG(t *testing.T) {
	res := &Result{Sessions: 2, Publishers: 8, Subscribers: 24, Params: Params{Video: "540x360@30"}, Timeline: []Sample{
		{AtS: 1, Participants: 2, Subscribers: 2, NodeCPUPercent: 10},
		{AtS: 2, Participants: 8, Subscribers: 24, NodeCPUPercent: 40, LossRatio: 0.001},
	}}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, res); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&buf)
	polylines := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 4 {
		t.Fatalf("%d series drawn, want 4", polylines)
	}
}
