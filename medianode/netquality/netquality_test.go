package netquality

import (
	"testing"
	"time"
)

func TestLevelByLoss(t *testing.T) {
	// A typical access link: 20 ms RTT, 5 ms jitter.
	base := Sample{Connected: true, RTT: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}
	for _, tc := range []struct {
		loss float64
		want int
	}{
		{0, 5}, {0.01, 5}, {0.02, 5}, {0.05, 4}, {0.10, 3}, {0.15, 2}, {0.20, 1}, {0.30, 1}, {1, 1},
	} {
		s := base
		s.Loss = tc.loss
		if got := Level(MOS(s)); got != tc.want {
			t.Errorf("loss %.0f %%: level %d (MOS %.2f), want %d", tc.loss*100, got, MOS(s), tc.want)
		}
	}
}

func TestLevelByDelay(t *testing.T) {
	for _, tc := range []struct {
		rtt, jitter time.Duration
		want        int
	}{
		{0, 0, 5},
		{100 * time.Millisecond, 10 * time.Millisecond, 5},
		{400 * time.Millisecond, 20 * time.Millisecond, 4},
		{600 * time.Millisecond, 30 * time.Millisecond, 3},
		{800 * time.Millisecond, 50 * time.Millisecond, 2},
		{1500 * time.Millisecond, 100 * time.Millisecond, 1},
	} {
		s := Sample{Connected: true, RTT: tc.rtt, Jitter: tc.jitter}
		if got := Level(MOS(s)); got != tc.want {
			t.Errorf("RTT %s, jitter %s: level %d (MOS %.2f), want %d", tc.rtt, tc.jitter, got, MOS(s), tc.want)
		}
	}
}

func TestMOSBounds(t *testing.T) {
	for _, s := range []Sample{
		{Connected: true},
		{Connected: true, Loss: 1, RTT: time.Hour, Jitter: time.Hour},
		{Connected: true, Loss: -1},
		{Connected: true, Loss: 7},
	} {
		if m := MOS(s); m < 1 || m > 4.5 {
			t.Errorf("MOS(%+v) = %.3f, outside 1..4.5", s, m)
		}
	}
}

func TestNext(t *testing.T) {
	at := func(loss float64) Sample { return Sample{Connected: true, Loss: loss} }
	for _, tc := range []struct {
		name    string
		current int
		s       Sample
		want    int
	}{
		{"first sample gets its band", -1, at(0.10), 3},
		{"disconnected is 0", 5, Sample{Loss: 0}, 0},
		{"back from 0", 0, at(0), 5},
		{"just below 5's band stays 5", 5, at(0.035), 5},
		{"well below 5's band leaves it", 5, at(0.06), 4},
		{"just above 3's band stays 3", 3, at(0.075), 3},
		{"well above 3's band leaves it", 3, at(0.05), 4},
		{"a large drop goes straight down", 5, at(0.30), 1},
		{"a large rise goes straight up", 1, at(0), 5},
	} {
		if got := Next(tc.current, tc.s); got != tc.want {
			t.Errorf("%s: Next(%d, loss %.3f) = %d (MOS %.3f), want %d", tc.name, tc.current, tc.s.Loss, got, MOS(tc.s), tc.want)
		}
	}
}

func TestHeadroomCaps(t *testing.T) {
	clean := Sample{Connected: true, RTT: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}
	for _, tc := range []struct {
		headroom float64
		want     int
	}{
		{0, 5},    // unknown
		{1.5, 5},  // the estimate above what is sent
		{0.9, 5},  // within the estimator's swing
		{0.8, 3},  // the stream exceeds the link
		{0.5, 3},  //
		{0.3, 2},  // less than half of it fits
		{0.01, 2}, //
	} {
		s := clean
		s.Headroom = tc.headroom
		if got := Next(5, s); got != tc.want {
			t.Errorf("headroom %.2f on a clean link: level %d, want %d", tc.headroom, got, tc.want)
		}
	}
	// A lossy link stays as low as its loss puts it.
	lossy := clean
	lossy.Loss, lossy.Headroom = 0.30, 0.8
	if got := Next(5, lossy); got != 1 {
		t.Errorf("30 %% loss and headroom 0.8: level %d, want 1", got)
	}
}
