package clustertest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pion's mDNS-less ICE agents and net/http's idle connections close asynchronously.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// tcpOnly joins a session as a participant whose network blocks UDP: ICE
// may use TCP4 only.
func tcpOnly(t *testing.T, ctx context.Context, ov *openvidu.Client, sid string) *participant.Participant {
	t.Helper()
	conn, err := ov.CreateConnection(ctx, sid, openvidu.ConnectionProperties{Role: "PUBLISHER"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := participant.Join(ctx, participant.Config{Token: conn.Token, LoopbackOnly: true,
		NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeTCP4}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestICETCPParticipants: two participants that can only use TCP, one
// publishing and one subscribing, get media through the media node's
// ICE-TCP port: their selected candidate pairs are TCP, to the port the
// node's heartbeat reports. With ICE-TCP off, such a participant cannot
// publish at all.
func TestICETCPParticipants(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	ov, err := openvidu.New(openvidu.Config{URL: c.MasterURLs[0], Secret: clustertest.Secret})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: "icetcp"})
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := tcpOnly(t, ctx, ov, s.ID), tcpOnly(t, ctx, ov, s.ID)
	pub, err := alice.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
	if err != nil {
		t.Fatalf("publish over TCP only: %v", err)
	}
	go pub.SendSynthetic(ctx, participant.DefaultVideo)
	if _, err := bob.WaitForStreams(ctx, 1); err != nil {
		t.Fatal(err)
	}
	sub, err := bob.Subscribe(ctx, pub.StreamID)
	if err != nil {
		t.Fatalf("subscribe over TCP only: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for st := sub.Stats(); st.VideoPackets < 100 || st.AudioPackets < 50; st = sub.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("bob received too little over TCP: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}

	nodes, err := c.Store.MediaNodes(ctx)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("media nodes %+v (%v)", nodes, err)
	}
	node := nodes[0]
	if node.ICETCPPort == 0 || node.ICEUDPPort == 0 {
		t.Fatalf("the heartbeat reports UDP port %d, ICE-TCP port %d", node.ICEUDPPort, node.ICETCPPort)
	}
	for name, pairOf := range map[string]func() (*webrtc.ICECandidatePair, error){
		"publisher": pub.CandidatePair, "subscriber": sub.CandidatePair,
	} {
		pair, err := pairOf()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if pair.Local.Protocol != webrtc.ICEProtocolTCP || pair.Remote.Protocol != webrtc.ICEProtocolTCP ||
			pair.Remote.TCPType != "passive" || int(pair.Remote.Port) != node.ICETCPPort {
			t.Errorf("%s uses %s, want TCP to the node's passive port %d", name, pair, node.ICETCPPort)
		}
	}
	if err := bob.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := alice.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.AssertNoLeftovers(t)
}

// TestICETCPOff: with media.tcp_port -1 the node announces no TCP
// candidate, so a participant restricted to TCP never connects (what the
// test above would see without ICE-TCP), and the heartbeat reports no port.
func TestICETCPOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1,
		Configure: func(cfg *config.Config) { cfg.Media.TCPPort = -1 }})
	ov, err := openvidu.New(openvidu.Config{URL: c.MasterURLs[0], Secret: clustertest.Secret})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: "icetcp-off"})
	if err != nil {
		t.Fatal(err)
	}
	alice := tcpOnly(t, ctx, ov, s.ID)
	pubCtx, cancelPub := context.WithTimeout(ctx, 8*time.Second)
	defer cancelPub()
	_, err = alice.Publish(pubCtx, participant.PublishOptions{Video: true})
	// ICE fails, or the participant's media recovery closes the failed peer
	// connection first (both end the publish without media).
	if err == nil || !(errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "peer connection failed") ||
		strings.Contains(err.Error(), "peer connection closed")) {
		t.Errorf("a TCP-only publish without ICE-TCP: %v, want ICE to fail", err)
	}
	nodes, err := c.Store.MediaNodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ICETCPPort != 0 || nodes[0].ICEUDPPort == 0 {
		t.Errorf("media nodes %+v (%v): want a UDP port and no ICE-TCP port", nodes, err)
	}
	_ = alice.Leave(ctx)
}
