package sfu

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Codec names a session's video codec (OpenVidu's forcedVideoCodec).
const (
	CodecVP8  = "VP8"
	CodecH264 = "H264"
)

var (
	opusCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: 111,
	}
	videoFeedback = []webrtc.RTCPFeedback{
		{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"},
	}
	vp8Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback,
		},
		PayloadType: 96,
	}
	h264Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: videoFeedback,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		},
		PayloadType: 102,
	}
)

func videoCodec(name string) (webrtc.RTPCodecParameters, error) {
	switch strings.ToUpper(name) {
	case CodecVP8, "":
		return vp8Codec, nil
	case CodecH264:
		return h264Codec, nil
	}
	return webrtc.RTPCodecParameters{}, fmt.Errorf("unsupported video codec %q (VP8 or H264)", name)
}

// engine builds the pion API objects of the node's peer connections: every
// one shares the node's single UDP port (UDP mux) and, with ICE-TCP, its
// single TCP port (TCP mux), uses ICE-lite (the node answers connectivity
// checks and never starts them, like mediasoup) and announces the
// configured IPs.
type engine struct {
	settings webrtc.SettingEngine
	// gate answers the checks of peer connections closed with their
	// consent revoked, before pion's UDP mux reads the socket.
	gate *consentGate
	// tcpMux is pion's ICE-TCP mux over the node's TCP listener (nil
	// without ICE-TCP); the SFU closes it, and with it the listener.
	tcpMux ice.TCPMux
	// logs gets pion's logs (nil: pion's default).
	logs      logging.LoggerFactory
	closeOnce sync.Once
	closeErr  error
}

// EngineConfig configures the node's ICE.
type EngineConfig struct {
	// UDPConn is the node's single media socket.
	UDPConn net.PacketConn
	// TCPListener, when set, is the node's single ICE-TCP port: every peer
	// connection also gets a passive TCP host candidate on it (RFC 6544,
	// media framed as RFC 4571 by pion's TCP mux), for clients whose
	// network blocks UDP. The SFU owns it once New succeeds: Close closes
	// it.
	TCPListener net.Listener
	// PublicIPs replace the local address in host candidates (NAT 1:1),
	// UDP and TCP alike.
	PublicIPs []string
	// KeepPrivateIPs announces the local addresses too, the public ones
	// appended (clients inside the node's own network: a recorder in the
	// same docker network).
	KeepPrivateIPs bool
	// LoggerFactory receives pion's logs (nil: pion's default, warnings only).
	LoggerFactory logging.LoggerFactory
}

// ICE-TCP buffers of pion's TCP mux (ice.TCPMuxParams), per TCP connection.
const (
	// tcpReadBufferPackets is how many received packets wait for the peer
	// connection's reader before the mux stops reading the socket (TCP's
	// own flow control then slows the sender).
	tcpReadBufferPackets = 64
	// tcpWriteBufferBytes bounds the packets queued for a TCP client, in
	// bytes: about 1.6 s of a 2.5 Mbit/s stream. Writes never block (a
	// forwarding loop writes to every subscriber in turn: one congested
	// TCP client must not stall the others); past the bound packets are
	// dropped, and NACKs and keyframe requests repair them as UDP losses.
	// pion's webrtc.NewICETCPMux sets no write buffer (blocking writes),
	// hence ice.NewTCPMuxDefault.
	tcpWriteBufferBytes = 512 << 10
	// tcpFirstSTUNTimeout is how long a new TCP connection may stay silent
	// before its first STUN binding request (a browser sends it at once;
	// pion's default is 30 s): idle connections are dropped sooner.
	tcpFirstSTUNTimeout = 10 * time.Second
)

func newEngine(cfg EngineConfig) (*engine, error) {
	var s webrtc.SettingEngine
	if cfg.LoggerFactory != nil {
		s.LoggerFactory = cfg.LoggerFactory
	}
	s.SetLite(true)
	// The cheapest SRTP profile first: AES-128-GCM (fewer AES rounds than
	// pion's default AES-256-GCM; both AEAD, no separate HMAC).
	s.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	logger := func(scope string) logging.LeveledLogger {
		if cfg.LoggerFactory == nil {
			return nil
		}
		return cfg.LoggerFactory.NewLogger(scope)
	}
	e := &engine{gate: newConsentGate(cfg.UDPConn), logs: cfg.LoggerFactory}
	s.SetICEUDPMux(webrtc.NewICEUDPMux(logger("udpmux"), e.gate))
	local, _ := cfg.UDPConn.LocalAddr().(*net.UDPAddr)
	if local != nil && local.IP.IsLoopback() {
		s.SetIncludeLoopbackCandidate(true)
	}
	if len(cfg.PublicIPs) > 0 {
		// pion applies the rules to host candidates of every network
		// type: the TCP candidates announce the same addresses.
		mode := webrtc.ICEAddressRewriteReplace
		if cfg.KeepPrivateIPs {
			mode = webrtc.ICEAddressRewriteAppend
		}
		err := s.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            mode,
		})
		if err != nil {
			return nil, fmt.Errorf("announce public IPs %v: %w", cfg.PublicIPs, err)
		}
	}
	if cfg.TCPListener == nil {
		s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	} else {
		// Passive TCP host candidates only (the node is ICE-lite: it never
		// connects out), prioritized by pion below the UDP ones: type
		// preference 126-27 (pion's TCP offset) against 126 for a UDP host
		// candidate, local preference (2^13)*4+8191 for passive TCP
		// against 65535 (RFC 6544 section 4.2), so 1671430143 against
		// 2130706431: a client that can use both picks UDP.
		s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
		e.tcpMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{
			Listener:             newClosingListener(cfg.TCPListener, e.gate),
			Logger:               logger("tcpmux"),
			ReadBufferSize:       tcpReadBufferPackets,
			WriteBufferSize:      tcpWriteBufferBytes,
			FirstStunBindTimeout: tcpFirstSTUNTimeout,
		})
		s.SetICETCPMux(e.tcpMux)
	}
	e.settings = s
	return e, nil
}

// close releases the TCP mux: its listener, its connections and their
// goroutines (it waits for them).
func (e *engine) close() error {
	e.closeOnce.Do(func() {
		if e.tcpMux != nil {
			e.closeErr = e.tcpMux.Close()
		}
	})
	return e.closeErr
}

// publisherAPI returns the API for a publisher's peer connection: Opus and the
// session's video codec, NACK generation towards the publisher, receiver
// reports and transport-wide congestion control feedback so that the
// browser's bandwidth estimation can ramp up. tap comes first, so that it
// sees the receiver reports the report interceptor writes.
//
// With remb the video also negotiates goog-remb: the node caps a
// simulcast publisher with REMB (layerCap).
func (e *engine) publisherAPI(video webrtc.RTPCodecParameters, tap interceptor.Factory, remb bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, video); err != nil {
		return nil, err
	}
	// Simulcast: the encodings' RTP stream ids (RFC 8852) and the mid
	// pion reads them with.
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	ir.Add(tap)
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, err
	}
	ir.Add(gen)
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return nil, err
	}
	ir.Add(rr)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeVideo)
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	// libwebrtc heeds REMB with transport-cc too, as a cap.
	if remb {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBGoogREMB}, webrtc.RTPCodecTypeVideo)
	}
	tw, err := twcc.NewSenderInterceptor()
	if err != nil {
		return nil, err
	}
	ir.Add(tw)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(e.settings), webrtc.WithInterceptorRegistry(ir)), nil
}

// subscriberAPI returns the API for a subscriber's peer connection: the
// publisher's codecs and sender reports. NACKs are answered by the SFU from
// the track's shared retransmission buffer, not by a per-subscriber interceptor.
//
// With bwe (a subscription to simulcast video) the video also carries
// transport-wide sequence numbers and the subscriber sends transport-wide
// congestion control feedback, which bwe reads through pion's congestion
// control interceptor: the down track chooses its layer by it.
func (e *engine) subscriberAPI(video webrtc.RTPCodecParameters, bwe *subscriberBWE) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, video); err != nil {
		return nil, err
	}
	// Browsers then send REMB, their estimate of the bandwidth for what
	// they receive: the network quality's headroom (rembMeter).
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBGoogREMB}, webrtc.RTPCodecTypeVideo)
	ir := &interceptor.Registry{}
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		return nil, err
	}
	ir.Add(sr)
	if bwe != nil {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeVideo)
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
		// Registered in this order, a packet meets the header extension
		// interceptor first (it numbers the packet) and the estimator
		// after (it records the number).
		cc, err := bwe.interceptorFactory()
		if err != nil {
			return nil, err
		}
		ir.Add(cc)
		tw, err := twcc.NewHeaderExtensionInterceptor()
		if err != nil {
			return nil, err
		}
		ir.Add(tw)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(e.settings), webrtc.WithInterceptorRegistry(ir)), nil
}

func registerCodecs(m *webrtc.MediaEngine, video webrtc.RTPCodecParameters) error {
	if err := m.RegisterCodec(opusCodec, webrtc.RTPCodecTypeAudio); err != nil {
		return fmt.Errorf("register opus: %w", err)
	}
	if err := m.RegisterCodec(video, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("register %s: %w", video.MimeType, err)
	}
	return nil
}

// offeredKinds parses an SDP offer and returns the media kinds it sends,
// checking that every audio and video section proposes a codec the node can
// forward for this session (otherwise the answer would silently reject it),
// and the rids of the video's simulcast encodings in the offer's order
// (RFC 8851 "a=rid:<id> send"; none without simulcast).
func offeredKinds(offer string, video webrtc.RTPCodecParameters) ([]webrtc.RTPCodecType, []string, error) {
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(offer); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	var rids []string
	want := map[string]string{"audio": "opus", "video": strings.TrimPrefix(strings.ToLower(video.MimeType), "video/")}
	var kinds []webrtc.RTPCodecType
	for _, md := range parsed.MediaDescriptions {
		codec, ok := want[md.MediaName.Media]
		if !ok || md.MediaName.Port.Value == 0 {
			continue
		}
		found := false
		for _, a := range md.Attributes {
			if a.Key == "rtpmap" && strings.Contains(strings.ToLower(a.Value), " "+codec+"/") {
				found = true
				break
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("%w: the %s section offers no %s", ErrCodecNotOffered, md.MediaName.Media, strings.ToUpper(codec))
		}
		if md.MediaName.Media == "video" {
			for _, a := range md.Attributes {
				if id, dir, ok := strings.Cut(a.Value, " "); a.Key == "rid" && ok && strings.HasPrefix(dir, "send") && !slices.Contains(rids, id) {
					rids = append(rids, id)
				}
			}
		}
		kind := webrtc.NewRTPCodecType(md.MediaName.Media)
		if !slices.Contains(kinds, kind) {
			kinds = append(kinds, kind)
		}
	}
	if len(kinds) == 0 {
		return nil, nil, fmt.Errorf("%w: no audio or video section", ErrBadSDP)
	}
	return kinds, rids, nil
}
