package sfu

import (
	"math"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// TestUplinkMeter feeds receiver reports through the tap, as pion's
// report interceptor writes them, and reads samples between them.
func TestUplinkMeter(t *testing.T) {
	m := newUplinkMeter()
	tap := &reportTap{m: m}
	const audio, video, unknown = 1111, 2222, 3333
	tap.BindRemoteStream(&interceptor.StreamInfo{SSRC: audio, ClockRate: 48000, MimeType: "audio/opus"}, nil)
	tap.BindRemoteStream(&interceptor.StreamInfo{SSRC: video, ClockRate: 90000, MimeType: "video/VP8"}, nil)
	var written int
	w := tap.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		written += len(pkts)
		return 0, nil
	}))
	report := func(blocks ...rtcp.ReceptionReport) {
		t.Helper()
		if _, err := w.Write([]rtcp.Packet{&rtcp.ReceiverReport{Reports: blocks}, &rtcp.PictureLossIndication{MediaSSRC: video}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, ok := m.sample(); ok {
		t.Fatal("a sample before any report")
	}
	report(rtcp.ReceptionReport{SSRC: audio, LastSequenceNumber: 1000, TotalLost: 5, Jitter: 480},
		rtcp.ReceptionReport{SSRC: video, LastSequenceNumber: 5000, TotalLost: 0, Jitter: 9000},
		rtcp.ReceptionReport{SSRC: unknown, LastSequenceNumber: 1, TotalLost: 1})
	if written != 2 {
		t.Errorf("the tap passed %d packets on, want 2", written)
	}
	// The first report is the reference: no loss ratio yet, but jitter.
	loss, jitter, ok := m.sample()
	if ok || jitter != 10*time.Millisecond {
		t.Errorf("first sample: loss %v jitter %v ok %v, want no loss ratio and audio's 10 ms jitter", loss, jitter, ok)
	}
	steps := []struct {
		name         string
		audio, video rtcp.ReceptionReport
		loss         float64
		ok           bool
	}{
		{"10 % audio loss, video repaired", rtcp.ReceptionReport{SSRC: audio, LastSequenceNumber: 1100, TotalLost: 15},
			rtcp.ReceptionReport{SSRC: video, LastSequenceNumber: 5200, TotalLost: 1}, 0.10, true},
		{"too few packets: held over", rtcp.ReceptionReport{SSRC: audio, LastSequenceNumber: 1110, TotalLost: 16},
			rtcp.ReceptionReport{SSRC: video, LastSequenceNumber: 5210, TotalLost: 1}, 0, false},
		{"the held over packets count next time", rtcp.ReceptionReport{SSRC: audio, LastSequenceNumber: 1150, TotalLost: 35},
			rtcp.ReceptionReport{SSRC: video, LastSequenceNumber: 5300, TotalLost: 1}, 0.40, true},
		{"lost going down (duplicates) is no loss", rtcp.ReceptionReport{SSRC: audio, LastSequenceNumber: 1250, TotalLost: 30},
			rtcp.ReceptionReport{SSRC: video, LastSequenceNumber: 5400, TotalLost: 1}, 0, true},
	}
	for _, s := range steps {
		report(s.audio, s.video)
		loss, _, ok := m.sample()
		if ok != s.ok || math.Abs(loss-s.loss) > 1e-9 {
			t.Errorf("%s: loss %.3f ok %v, want %.3f %v", s.name, loss, ok, s.loss, s.ok)
		}
	}
	tap.UnbindRemoteStream(&interceptor.StreamInfo{SSRC: audio})
	report(rtcp.ReceptionReport{SSRC: audio, LastSequenceNumber: 2000, TotalLost: 500},
		rtcp.ReceptionReport{SSRC: video, LastSequenceNumber: 5500, TotalLost: 1, Jitter: 9000})
	if loss, jitter, _ := m.sample(); loss != 0 || jitter != 100*time.Millisecond {
		t.Errorf("after audio left: loss %v jitter %v, want video's: 0 and 100 ms", loss, jitter)
	}
}

func TestRTTMeter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	sentAt := now.Add(-250 * time.Millisecond)
	var m rttMeter
	// The subscriber held the sender report 200 ms: the RTT is 50 ms.
	delay := uint32(200 * 65536 / 1000)
	m.observe(42, []rtcp.ReceptionReport{
		{SSRC: 7, LastSenderReport: ntpMiddle(sentAt), Delay: 0}, // another track's
		{SSRC: 42, LastSenderReport: ntpMiddle(sentAt), Delay: delay},
	}, now)
	if got := time.Duration(m.rtt.Load()); got < 49*time.Millisecond || got > 51*time.Millisecond {
		t.Errorf("RTT %v, want 50 ms", got)
	}
	for _, bad := range []rtcp.ReceptionReport{
		{SSRC: 42}, // no sender report received yet
		{SSRC: 42, LastSenderReport: ntpMiddle(now.Add(time.Second))}, // from the future
	} {
		m.observe(42, []rtcp.ReceptionReport{bad}, now)
		if got := time.Duration(m.rtt.Load()); got < 49*time.Millisecond || got > 51*time.Millisecond {
			t.Errorf("after %+v the RTT is %v, want the 50 ms kept", bad, got)
		}
	}
}

func TestREMBMeter(t *testing.T) {
	const hold = 6 * time.Second
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	// 1 Mbit/s sent: 125 000 bytes a second.
	type report struct {
		estimate float64
		sent     uint64 // bytes sent in the second before
	}
	for _, tc := range []struct {
		name    string
		reports []report
		want    float64 // headroom right after the last report
	}{
		{"no estimate", nil, 0},
		{"climbing below the rate (the sender sped up): not congestion",
			[]report{{200_000, 125_000}, {300_000, 125_000}, {450_000, 125_000}, {600_000, 125_000}}, 0},
		{"above the rate: nothing to say", []report{{1_500_000, 125_000}, {1_400_000, 125_000}}, 0},
		{"falling below 0.85 of the rate: congestion", []report{{1_500_000, 125_000}, {1_200_000, 125_000}, {400_000, 125_000}}, 0.4},
		{"falling as the rate sent falls (the publisher slowed down): not congestion",
			[]report{{1_500_000, 125_000}, {1_200_000, 125_000}, {400_000, 60_000}}, 0},
		{"falling, a tiny stream: nothing to say", []report{{100_000, 2_000}, {40_000, 2_000}}, 0},
	} {
		var m rembMeter
		var sent uint64
		at := t0
		for i, r := range tc.reports {
			if i > 0 {
				sent += r.sent
			}
			m.observe(r.estimate, sent, at)
			at = at.Add(time.Second)
		}
		last := at.Add(-time.Second)
		if h := m.current(last, hold); h < tc.want-0.01 || h > tc.want+0.01 {
			t.Errorf("%s: headroom %.3f, want %.2f", tc.name, h, tc.want)
		}
		if h := m.current(last.Add(hold+time.Second), hold); h != 0 {
			t.Errorf("%s: headroom %.3f after the hold, want none", tc.name, h)
		}
	}
}
