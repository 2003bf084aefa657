package sfu

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

// tcpTestSFU is an SFU with ICE-TCP on loopback, and its two ports.
type tcpTestSFU struct {
	*SFU
	udpPort, tcpPort int
}

func newTCPTestSFU(t *testing.T, publicIPs ...string) *tcpTestSFU {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Engine: EngineConfig{UDPConn: conn, TCPListener: ln, PublicIPs: publicIPs}})
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		_ = conn.Close()
	})
	return &tcpTestSFU{SFU: s, udpPort: conn.LocalAddr().(*net.UDPAddr).Port, tcpPort: ln.Addr().(*net.TCPAddr).Port}
}

// peerAPI is a plain pion peer on loopback restricted to the given network
// types (pion's SettingEngine.SetNetworkTypes): TCP4 alone is a client
// whose network blocks UDP; it connects out with active TCP candidates.
func peerAPI(t *testing.T, networks ...webrtc.NetworkType) *webrtc.API {
	t.Helper()
	var se webrtc.SettingEngine
	// pion's controlling agent nominates the first pair that succeeds once
	// this wait is over (default 0: on loopback, a TCP pair as often as
	// not); waiting until every pair was checked makes it choose by
	// priority, as Chrome does.
	se.SetHostAcceptanceMinWait(300 * time.Millisecond)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes(networks)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

// selectedPair returns the ICE candidate pair a peer connection uses.
func selectedPair(t *testing.T, pc *webrtc.PeerConnection) *webrtc.ICECandidatePair {
	t.Helper()
	var pair *webrtc.ICECandidatePair
	waitFor(t, "a selected candidate pair", func() bool {
		p, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		pair = p
		return err == nil && p != nil
	})
	return pair
}

// TestICETCPForwarding: a publisher and a subscriber that can only use TCP
// (their network drops UDP) reach the node through its one ICE-TCP port,
// and media flows between them; a peer that can use both and chooses by
// priority picks UDP.
func TestICETCPForwarding(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newTCPTestSFU(t)
	const sid, stream = "ses_TCP", "str_CAM_abcd_con_pub"
	tcpOnly := peerAPI(t, webrtc.NetworkTypeTCP4)
	pub := publishWith(t, ctx, tcpOnly, s.SFU, sid, stream, CodecVP8)
	sub := subscribeWith(t, ctx, tcpOnly, s.SFU, sid, "con_tcp_"+stream, stream)
	both := subscribeWith(t, ctx, peerAPI(t, webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4), s.SFU, sid, "con_both_"+stream, stream)
	go pub.send(ctx, 500)
	waitFor(t, "media over ICE-TCP", func() bool {
		return sub.video.Load() > 20 && sub.audio.Load() > 20 && both.video.Load() > 20
	})
	for name, pc := range map[string]*webrtc.PeerConnection{"publisher": pub.pc, "subscriber": sub.pc} {
		p := selectedPair(t, pc)
		if p.Local.Protocol != webrtc.ICEProtocolTCP || p.Remote.Protocol != webrtc.ICEProtocolTCP ||
			p.Remote.TCPType != "passive" || int(p.Remote.Port) != s.tcpPort || p.Local.TCPType != "active" {
			t.Errorf("%s: selected pair %s, want active TCP to the node's passive TCP port %d", name, p, s.tcpPort)
		}
	}
	if p := selectedPair(t, both.pc); p.Remote.Protocol != webrtc.ICEProtocolUDP || int(p.Remote.Port) != s.udpPort {
		t.Errorf("a peer that can use UDP and TCP selected %s, want the node's UDP port %d", p, s.udpPort)
	}
	s.Release(sid, stream)
	if _, endpoints := s.Counts(); endpoints != 0 {
		t.Errorf("%d endpoints after the release", endpoints)
	}
}

// candidate is an a=candidate line of an SDP.
type candidate struct {
	protocol, address, typ, tcpType string
	port                            int
	priority                        uint64
}

func candidates(t *testing.T, sdp string) []candidate {
	t.Helper()
	var out []candidate
	for _, line := range strings.Split(sdp, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "a=candidate:")
		if !ok {
			continue
		}
		// foundation component protocol priority address port typ type [tcptype t]
		f := strings.Fields(rest)
		if len(f) < 8 {
			t.Fatalf("candidate line %q", line)
		}
		if f[1] != "1" {
			continue // RTCP's component (rtcp-mux: the same transport)
		}
		prio, err1 := strconv.ParseUint(f[3], 10, 32)
		port, err2 := strconv.Atoi(f[5])
		if err1 != nil || err2 != nil {
			t.Fatalf("candidate line %q", line)
		}
		c := candidate{protocol: strings.ToLower(f[2]), priority: prio, address: f[4], port: port, typ: f[7]}
		for i := 8; i+1 < len(f); i += 2 {
			if f[i] == "tcptype" {
				c.tcpType = f[i+1]
			}
		}
		out = append(out, c)
	}
	return out
}

// TestICETCPCandidates: with a TCP listener the node's answer carries, per
// address, a UDP host candidate and a passive TCP host candidate on the TCP
// port, both rewritten to the public IP (NAT 1:1), the TCP one at a lower
// priority; without one, no TCP candidate.
func TestICETCPCandidates(t *testing.T) {
	answer := func(s *SFU) string {
		pc, err := loopbackAPI(t, vp8Codec).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
		offer, _ := pc.CreateOffer(nil)
		sdp, err := s.Publish(context.Background(), mediaapi.PublishRequest{SessionID: "s", StreamID: "str_CAM_a_con_b", SDPOffer: gathered(t, pc, offer), VideoCodec: CodecVP8})
		if err != nil {
			t.Fatal(err)
		}
		return sdp
	}

	s := newTCPTestSFU(t, "203.0.113.7")
	sdp := answer(s.SFU)
	var udp, tcp []candidate
	for _, c := range candidates(t, sdp) {
		if c.address != "203.0.113.7" || c.typ != "host" {
			t.Errorf("candidate %+v: want a host candidate on the public IP", c)
		}
		switch c.protocol {
		case "udp":
			udp = append(udp, c)
		case "tcp":
			tcp = append(tcp, c)
		}
	}
	if len(udp) != 1 || len(tcp) != 1 {
		t.Fatalf("%d UDP and %d TCP candidates, want one each:\n%s", len(udp), len(tcp), sdp)
	}
	if udp[0].port != s.udpPort || tcp[0].port != s.tcpPort || tcp[0].tcpType != "passive" {
		t.Errorf("UDP %+v on %d, TCP %+v on %d (passive)", udp[0], s.udpPort, tcp[0], s.tcpPort)
	}
	// RFC 6544 4.2 as pion applies it: type preference 126 (host) for both,
	// local preference 65535 for UDP, (2^13)*4+8191 for passive TCP.
	wantTCP := uint64(99<<24 | (4<<13+8191)<<8 | 255)
	if tcp[0].priority != wantTCP || udp[0].priority <= tcp[0].priority {
		t.Errorf("priorities: UDP %d, TCP %d (want %d, below UDP)", udp[0].priority, tcp[0].priority, wantTCP)
	}

	noTCP := newTestSFU(t)
	if sdp := answer(noTCP); strings.Contains(strings.ToLower(sdp), " tcp ") {
		t.Errorf("a node without ICE-TCP announced a TCP candidate:\n%s", sdp)
	}
}

// TestICETCPPortReleasedOnClose: Close closes the TCP listener and the
// connections accepted on it (goleak, in TestMain, checks their goroutines).
func TestICETCPPortReleasedOnClose(t *testing.T) {
	s := newTCPTestSFU(t)
	addr := fmt.Sprintf("127.0.0.1:%d", s.tcpPort)
	// A connection that never sends its first STUN message: the mux holds
	// it (and a goroutine) until Close.
	idle, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(100 * time.Millisecond) // accepted
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s: it waited for the silent connection", d)
	}
	if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
		c.Close()
		t.Error("the ICE-TCP port still accepts connections after Close")
	}
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("the accepted connection is still open after Close: %v", err)
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("the port is not free after Close: %v", err)
	}
	_ = ln.Close()
}
