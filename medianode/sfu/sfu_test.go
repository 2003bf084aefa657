package sfu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestSFU(t *testing.T) *SFU {
	t.Helper()
	return newTestSFUWith(t, Config{})
}

// newTestSFUWith is newTestSFU with cfg (its engine's UDP socket set here).
func newTestSFUWith(t *testing.T, cfg Config) *SFU {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine.UDPConn = conn
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		_ = conn.Close()
	})
	return s
}

// loopbackAPI is a plain pion peer restricted to loopback, like the browsers
// of the end-to-end tests.
// With codecs, only those video codecs are offered (plus Opus).
func loopbackAPI(t *testing.T, codecs ...webrtc.RTPCodecParameters) *webrtc.API {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	// The NACK test re-requests packets that did arrive: a real receiver's
	// SRTP replay protection would drop the copies.
	se.DisableSRTPReplayProtection(true)
	m := &webrtc.MediaEngine{}
	if len(codecs) == 0 {
		if err := m.RegisterDefaultCodecs(); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := registerCodecs(m, codecs[0]); err != nil {
			t.Fatal(err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

func gathered(t *testing.T, pc *webrtc.PeerConnection, desc webrtc.SessionDescription) string {
	t.Helper()
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		t.Fatal(err)
	}
	<-done
	return pc.LocalDescription().SDP
}

type testPublisher struct {
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	plis         atomic.Int64
}

func publish(t *testing.T, ctx context.Context, s *SFU, sid, streamID, codec string) *testPublisher {
	t.Helper()
	return publishWith(t, ctx, loopbackAPI(t), s, sid, streamID, codec)
}

// publishWith is publish from a peer of the given API.
func publishWith(t *testing.T, ctx context.Context, api *webrtc.API, s *SFU, sid, streamID, codec string) *testPublisher {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	mime := webrtc.MimeTypeVP8
	if codec == CodecH264 {
		mime = webrtc.MimeTypeH264
	}
	p := &testPublisher{pc: pc}
	p.video, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime}, "video", streamID)
	p.audio, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", streamID)
	for _, tr := range []*webrtc.TrackLocalStaticRTP{p.audio, p.video} {
		tc, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				pkts, _, err := tc.Sender().ReadRTCP()
				if err != nil {
					return
				}
				for _, pk := range pkts {
					if _, ok := pk.(*rtcp.PictureLossIndication); ok {
						p.plis.Add(1)
					}
				}
			}
		}()
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := s.Publish(ctx, mediaapi.PublishRequest{SessionID: sid, StreamID: streamID, SDPOffer: gathered(t, pc, offer), VideoCodec: codec})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return p
}

// send writes n synthetic packets on both tracks, 10 ms apart.
func (p *testPublisher) send(ctx context.Context, n int) {
	for i := 0; i < n && ctx.Err() == nil; i++ {
		_ = p.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: true}, Payload: []byte{0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, byte(i)}})
		_ = p.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 960)}, Payload: []byte{0xfc, byte(i)}})
		time.Sleep(10 * time.Millisecond)
	}
}

type testSubscriber struct {
	pc           *webrtc.PeerConnection
	video, audio atomic.Int64
	videoSeqs    chan uint16
	videoTrack   atomic.Pointer[webrtc.TrackRemote]
	// videoTag is the last byte of the last video payload (the simulcast
	// tests' layer mark).
	videoTag atomic.Int32
}

func subscribe(t *testing.T, ctx context.Context, s *SFU, sid, endpointID, streamID string) *testSubscriber {
	t.Helper()
	return subscribeWith(t, ctx, loopbackAPI(t), s, sid, endpointID, streamID)
}

// subscribeWith is subscribe from a peer of the given API.
func subscribeWith(t *testing.T, ctx context.Context, api *webrtc.API, s *SFU, sid, endpointID, streamID string) *testSubscriber {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	sub := &testSubscriber{pc: pc, videoSeqs: make(chan uint16, 4096)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			sub.videoTrack.Store(tr)
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				sub.video.Add(1)
				if len(pkt.Payload) > 0 {
					sub.videoTag.Store(int32(pkt.Payload[len(pkt.Payload)-1]))
				}
				select {
				case sub.videoSeqs <- pkt.SequenceNumber:
				default:
				}
			} else {
				sub.audio.Add(1)
			}
		}
	})
	offer, err := s.Subscribe(ctx, mediaapi.SubscribeRequest{SessionID: sid, EndpointID: endpointID, StreamID: streamID})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Answer(ctx, sid, endpointID, gathered(t, pc, answer)); err != nil {
		t.Fatalf("answer: %v", err)
	}
	return sub
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestForwardingAndRelease(t *testing.T) {
	for _, codec := range []string{CodecVP8, CodecH264} {
		t.Run(codec, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s := newTestSFU(t)
			const sid, stream = "ses_T", "str_CAM_abcd_con_pub"
			pub := publish(t, ctx, s, sid, stream, codec)
			subA := subscribe(t, ctx, s, sid, "con_a_"+stream, stream)
			subB := subscribe(t, ctx, s, sid, "con_b_"+stream, stream)
			go pub.send(ctx, 300)
			waitFor(t, "both subscribers to receive audio and video", func() bool {
				return subA.video.Load() > 20 && subA.audio.Load() > 20 && subB.video.Load() > 20 && subB.audio.Load() > 20
			})
			if pub.plis.Load() == 0 {
				t.Error("the publisher got no keyframe request for its new subscribers")
			}
			if sessions, endpoints := s.Counts(); sessions != 1 || endpoints != 3 {
				t.Errorf("Counts = %d sessions, %d endpoints; want 1, 3", sessions, endpoints)
			}
			// Releasing the publisher releases its subscribers.
			s.Release(sid, stream)
			if sessions, endpoints := s.Counts(); sessions != 0 || endpoints != 0 {
				t.Errorf("after release: %d sessions, %d endpoints; want none", sessions, endpoints)
			}
		})
	}
}

func TestNACKAnsweredFromBuffer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newTestSFU(t)
	const sid, stream = "ses_N", "str_CAM_abcd_con_pub"
	pub := publish(t, ctx, s, sid, stream, CodecVP8)
	sub := subscribe(t, ctx, s, sid, "con_a_"+stream, stream)
	sendCtx, stopSending := context.WithCancel(ctx)
	sent := make(chan struct{})
	go func() { defer close(sent); pub.send(sendCtx, 3000) }()
	waitFor(t, "video", func() bool { return sub.video.Load() >= 40 && sub.videoTrack.Load() != nil })
	stopSending()
	<-sent
	time.Sleep(100 * time.Millisecond) // let the last packets arrive: anything later is a retransmission
	var last uint16
	for len(sub.videoSeqs) > 0 {
		last = <-sub.videoSeqs
	}
	before := s.Stats().Retransmissions.Load()
	tr := sub.videoTrack.Load()
	err := sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		MediaSSRC: uint32(tr.SSRC()),
		Nacks:     rtcp.NackPairsFromSequenceNumbers([]uint16{last - 3, last - 2}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the NACKed packets to be resent", func() bool { return s.Stats().Retransmissions.Load()-before == 2 })
	got := map[uint16]bool{}
	waitFor(t, "the retransmissions to arrive", func() bool {
		for len(sub.videoSeqs) > 0 {
			got[<-sub.videoSeqs] = true
		}
		return got[last-3] && got[last-2]
	})
}

func TestPublishErrors(t *testing.T) {
	ctx := context.Background()
	s := newTestSFU(t)
	pc, err := loopbackAPI(t, vp8Codec).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	vp8, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "s")
	if _, err := pc.AddTrack(vp8); err != nil {
		t.Fatal(err)
	}
	offer, _ := pc.CreateOffer(nil)
	validVP8 := gathered(t, pc, offer)

	tests := []struct {
		name string
		req  mediaapi.PublishRequest
		want error
	}{
		{"garbage SDP", mediaapi.PublishRequest{SessionID: "s", StreamID: "a", SDPOffer: "hello", VideoCodec: CodecVP8}, ErrBadSDP},
		{"empty SDP", mediaapi.PublishRequest{SessionID: "s", StreamID: "a", VideoCodec: CodecVP8}, ErrBadSDP},
		{"forced codec missing", mediaapi.PublishRequest{SessionID: "s", StreamID: "a", SDPOffer: validVP8, VideoCodec: CodecH264}, ErrCodecNotOffered},
		{"unknown codec", mediaapi.PublishRequest{SessionID: "s", StreamID: "a", SDPOffer: validVP8, VideoCodec: "AV2"}, ErrBadSDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Publish(ctx, tt.req); !errors.Is(err, tt.want) {
				t.Errorf("Publish: %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := s.Subscribe(ctx, mediaapi.SubscribeRequest{SessionID: "s", EndpointID: "x", StreamID: "nope"}); !errors.Is(err, ErrUnknownStream) {
		t.Errorf("Subscribe to unknown stream: %v", err)
	}
	if err := s.Answer(ctx, "s", "nope", "v=0"); !errors.Is(err, ErrUnknownEndpoint) {
		t.Errorf("Answer for unknown endpoint: %v", err)
	}
	if sessions, endpoints := s.Counts(); endpoints != 0 {
		t.Errorf("failed calls left %d sessions, %d endpoints", sessions, endpoints)
	}
}

// TestAnnouncesPublicIPs: public IPs replace the node's own address in its
// host candidates (NAT 1:1), or join it with KeepPrivateIPs.
func TestAnnouncesPublicIPs(t *testing.T) {
	for _, tt := range []struct {
		name        string
		keepPrivate bool
	}{{"public only", false}, {"public and private", true}} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			s, err := New(Config{Engine: EngineConfig{UDPConn: conn, PublicIPs: []string{"203.0.113.7"}, KeepPrivateIPs: tt.keepPrivate}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			pc, err := loopbackAPI(t, vp8Codec).NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
			offer, _ := pc.CreateOffer(nil)
			answer, err := s.Publish(context.Background(), mediaapi.PublishRequest{SessionID: "s", StreamID: "str_CAM_a_con_b", SDPOffer: gathered(t, pc, offer), VideoCodec: CodecVP8})
			if err != nil {
				t.Fatal(err)
			}
			port := conn.LocalAddr().(*net.UDPAddr).Port
			public := strings.Contains(answer, fmt.Sprintf("203.0.113.7 %d typ host", port))
			private := strings.Contains(answer, fmt.Sprintf("127.0.0.1 %d typ host", port))
			if !public || private != tt.keepPrivate {
				t.Errorf("the answer announces the public IP %v, the private one %v (want %v) on the node's port:\n%s", public, private, tt.keepPrivate, answer)
			}
			if !strings.Contains(answer, "a=ice-lite") {
				t.Error("the node does not declare ICE-lite")
			}
		})
	}
}

// FuzzOfferedKinds checks the parser of publishers' SDP offers: it never
// panics, and what it accepts names each media kind once, only kinds whose
// section the offer has, with the session's codec offered; what it refuses
// it refuses as a bad SDP or a missing codec. Seeded with a Chrome offer
// (audio and video, BUNDLE).
func FuzzOfferedKinds(f *testing.F) {
	chrome, err := os.ReadFile("testdata/chrome-offer.sdp")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(chrome), false)
	f.Add(string(chrome), true)
	f.Add(strings.ReplaceAll(string(chrome), "opus/48000/2", "speex/48000"), false)
	f.Add(strings.Split(string(chrome), "m=video")[0], true)
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n", false)
	f.Add("", false)
	f.Fuzz(func(t *testing.T, offer string, h264 bool) {
		video := vp8Codec
		if h264 {
			video = h264Codec
		}
		kinds, _, err := offeredKinds(offer, video)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrCodecNotOffered) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if len(kinds) == 0 || len(kinds) > 2 {
			t.Fatalf("kinds %v", kinds)
		}
		seen := map[webrtc.RTPCodecType]bool{}
		for _, k := range kinds {
			if seen[k] || (k != webrtc.RTPCodecTypeAudio && k != webrtc.RTPCodecTypeVideo) {
				t.Fatalf("kinds %v", kinds)
			}
			seen[k] = true
			if !strings.Contains(offer, "m="+k.String()) {
				t.Fatalf("kind %s without a section in %q", k, offer)
			}
		}
	})
}

// TestReleaseMovedSession: a session released because it moved leaves the
// node's counts at once, its peer connections keep forwarding while they
// linger (a client still on them keeps its media until it moved), and they
// close within revokedLinger, which WaitLingering waits for.
func TestReleaseMovedSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newTestSFU(t)
	const sid, stream = "ses_M", "str_CAM_mvd_con_pub"
	pub := publish(t, ctx, s, sid, stream, CodecVP8)
	sub := subscribe(t, ctx, s, sid, "con_s_"+stream, stream)
	go pub.send(ctx, 1000)
	waitFor(t, "media", func() bool { return sub.video.Load() > 20 })

	released := time.Now()
	s.ReleaseSession(sid, true)
	if sessions, endpoints := s.Counts(); sessions != 0 || endpoints != 0 {
		t.Errorf("after the release: %d sessions, %d endpoints; want none", sessions, endpoints)
	}
	before := sub.video.Load()
	waitFor(t, "media while lingering", func() bool { return sub.video.Load() > before+20 })

	wctx, wcancel := context.WithTimeout(ctx, 2*revokedLinger)
	defer wcancel()
	s.WaitLingering(wctx)
	if waited := time.Since(released); waited < revokedLinger-500*time.Millisecond || waited > revokedLinger+time.Second {
		t.Errorf("WaitLingering returned %s after the release, want about %s", waited, revokedLinger)
	}
	// Closed: no more media, though the publisher still sends.
	time.Sleep(200 * time.Millisecond)
	after := sub.video.Load()
	time.Sleep(500 * time.Millisecond)
	if got := sub.video.Load(); got != after {
		t.Errorf("%d video packets forwarded after the lingering peer connections closed", got-after)
	}
}
