package participant

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// TestSyntheticPublisherAnswersKeyframeRequests: a keyframe request (PLI)
// for a synthetic publisher's video makes its next frame a keyframe, as a
// browser's encoder does, instead of waiting for the two-second group of
// pictures to end. Two pion peer connections on loopback.
func TestSyntheticPublisherAnswersKeyframeRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	send, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	recv, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()

	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "chorus")
	if err != nil {
		t.Fatal(err)
	}
	pub := &Publisher{pc: send, video: []*webrtc.TrackLocalStaticRTP{track}, keyframeWanted: make([]atomic.Bool, 1)}
	if err := pub.addTracks(send); err != nil {
		t.Fatal(err)
	}
	keyframes := make(chan time.Time, 64)
	ssrc := make(chan webrtc.SSRC, 1)
	recv.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		ssrc <- tr.SSRC()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if _, ok := KeyframeWidth(pkt.Payload); ok {
				keyframes <- time.Now()
			}
		}
	})
	offer, err := send.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	sdp, err := gather(ctx, send, offer)
	if err != nil {
		t.Fatal(err)
	}
	if err := recv.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
	answer, err := recv.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if sdp, err = gather(ctx, recv, answer); err != nil {
		t.Fatal(err)
	}
	if err := send.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
	pub.negotiated(send)
	go pub.SendSynthetic(ctx, VideoProfile{Width: 320, Height: 180, FPS: 30, Bitrate: 200_000})

	var media webrtc.SSRC
	select {
	case media = <-ssrc:
	case <-ctx.Done():
		t.Fatal("no video track")
	}
	select {
	case <-keyframes: // the group of pictures' first
	case <-ctx.Done():
		t.Fatal("no first keyframe")
	}
	time.Sleep(500 * time.Millisecond) // mid-group: the next periodic one is 1.5 s away
	for len(keyframes) > 0 {
		<-keyframes
	}
	asked := time.Now()
	if err := recv.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(media)}}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-keyframes:
		took := at.Sub(asked)
		t.Logf("keyframe %s after the PLI", took.Round(time.Millisecond))
		if took > 500*time.Millisecond {
			t.Errorf("keyframe %s after the PLI, want within a few frames", took)
		}
	case <-ctx.Done():
		t.Fatal("no keyframe after the PLI")
	}
}
