package capture

import (
	"testing"
	"time"
)

func TestOpusSamples(t *testing.T) {
	cases := []struct {
		name   string
		packet []byte
		want   int
	}{
		{"empty", nil, 0},
		{"CELT FB 20 ms", []byte{0xfc, 1, 2}, 960},
		{"CELT 2.5 ms", []byte{0x80}, 120},
		{"SILK NB 60 ms", []byte{0x18}, 2880},
		{"hybrid 10 ms, two frames", []byte{0x61, 1}, 960},
		{"code 3, 3 frames of 20 ms", []byte{0xfb, 0x03}, 2880},
		{"code 3, no count", []byte{0xfb}, 0},
		{"code 3, 0 frames", []byte{0xfb, 0x00}, 0},
		{"over 120 ms", []byte{0x1b, 0x03}, 0},
	}
	for _, tc := range cases {
		if got := opusSamples(tc.packet); got != tc.want {
			t.Errorf("%s: opusSamples = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestRTPClockUnwrapsAndTakesFastestPacket(t *testing.T) {
	base := time.UnixMilli(1_000_000)
	c := rtpClock{rate: 90000}
	c.observe(0xffffff00, base.Add(30*time.Millisecond))       // delayed 30 ms
	ext := c.observe(0x00000100, base.Add(5*time.Millisecond)) // 0x200 ticks later, delayed ~0
	if ext != 0x100000100 {
		t.Errorf("unwrapped %#x, want 0x100000100", ext)
	}
	if got := c.extend(0xfffffff0); got != 0xfffffff0 {
		t.Errorf("an older timestamp after the wrap extends to %#x", got)
	}
	// The second packet arrived 5 ms after base and 5.7 ms of media after
	// the first: the first was captured at base - 0.7 ms.
	if got := c.wallMillis(0xffffff00); got != base.UnixMilli()-1 {
		t.Errorf("wall time of the first packet %d, want %d", got, base.UnixMilli()-1)
	}
}

func TestSeqFilterDropsWhatTheBuilderReleased(t *testing.T) {
	var f seqFilter
	for _, seq := range []uint16{65534, 65535, 0, 1} {
		if !f.admit(seq) {
			t.Fatalf("in-order %d refused", seq)
		}
	}
	f.release(65535)
	f.release(0)
	if f.admit(65535) || f.admit(0) {
		t.Error("a released packet was admitted again")
	}
	if !f.admit(1) || !f.admit(2) {
		t.Error("packets after the released ones refused")
	}
	f.release(1)
	f.release(4) // 2 and 3 never came
	if f.lost != 2 {
		t.Errorf("lost = %d, want 2", f.lost)
	}
}
