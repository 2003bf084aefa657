package sfu

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// bindingRequest builds a connectivity check from a client to the node's
// ufrag, signed with password.
func bindingRequest(t *testing.T, nodeUfrag, password string) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(nodeUfrag+":clnt"), stun.NewShortTermIntegrity(password), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestConsentGate: checks to revoked credentials get an authenticated 403
// and never reach the mux; checks to other credentials, checks failing
// integrity and media pass or drop as before; revocations expire.
func TestConsentGate(t *testing.T) {
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	gate := newConsentGate(server)
	defer gate.Close()
	now := time.Now()
	gate.now = func() time.Time { return now }
	refusals := 0
	gate.revoke("gone", "gonepassword0123456789", func() { refusals++ })

	// What the mux reads, in order.
	read := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := gate.ReadFromAddrPort(buf)
			if err != nil {
				close(read)
				return
			}
			read <- append([]byte(nil), buf[:n]...)
		}
	}()
	send := func(b []byte) {
		if _, err := client.WriteTo(b, server.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		packet   []byte
		passes   bool // the mux reads it
		answered bool // the client gets a 403
	}{
		{"check to revoked credentials", bindingRequest(t, "gone", "gonepassword0123456789").Raw, false, true},
		{"check to revoked credentials, wrong integrity", bindingRequest(t, "gone", "forgedpassword012345678").Raw, false, false},
		{"check to live credentials", bindingRequest(t, "live", "livepassword0123456789").Raw, true, false},
		{"media", []byte{0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			send(tc.packet)
			// A marker packet after it: whatever the mux reads first tells
			// whether tc.packet passed.
			marker := []byte{0x80, 0x61, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2}
			send(marker)
			first := <-read
			if passed := string(first) == string(tc.packet); passed != tc.passes {
				t.Fatalf("the mux read the packet: %v, want %v", passed, tc.passes)
			}
			if tc.passes {
				if got := <-read; string(got) != string(marker) {
					t.Fatal("marker lost")
				}
			}
			_ = client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 1500)
			n, _, err := client.ReadFrom(buf)
			if answered := err == nil; answered != tc.answered {
				t.Fatalf("answered: %v (%v), want %v", answered, err, tc.answered)
			}
			if !tc.answered {
				return
			}
			resp := &stun.Message{Raw: buf[:n]}
			if err := resp.Decode(); err != nil {
				t.Fatal(err)
			}
			req := &stun.Message{Raw: tc.packet}
			_ = req.Decode()
			var code stun.ErrorCodeAttribute
			if err := code.GetFrom(resp); err != nil || code.Code != stun.CodeForbidden {
				t.Fatalf("error code %v (%v), want 403", code.Code, err)
			}
			if resp.Type != stun.BindingError || resp.TransactionID != req.TransactionID {
				t.Fatalf("answer %v for transaction %x, want a binding error for %x", resp.Type, resp.TransactionID, req.TransactionID)
			}
			if err := stun.NewShortTermIntegrity("gonepassword0123456789").Check(resp); err != nil {
				t.Fatalf("answer's integrity: %v", err)
			}
			if err := stun.Fingerprint.Check(resp); err != nil {
				t.Fatalf("answer's fingerprint: %v", err)
			}
		})
	}

	if refusals != 1 {
		t.Errorf("first refusal reported %d times, want once", refusals)
	}
	t.Run("revocation expires", func(t *testing.T) {
		now = now.Add(revokedFor)
		req := bindingRequest(t, "gone", "gonepassword0123456789")
		send(req.Raw)
		if got := <-read; string(got) != string(req.Raw) {
			t.Fatal("an expired revocation still refuses checks")
		}
		if n := gate.revokedCount.Load(); n != 0 {
			t.Fatalf("%d revocations kept after expiry", n)
		}
	})
}

// TestConsentGateICETCP: over ICE-TCP the gate answers a refused check in
// an RFC 4571 frame on the same connection, and hands the mux every other
// frame intact.
func TestConsentGateICETCP(t *testing.T) {
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	gate := newConsentGate(udp)
	defer gate.Close()
	gate.revoke("gone", "gonepassword0123456789", nil)
	ln := newClosingListener(inner, gate)
	defer ln.Close()

	client, err := net.Dial("tcp4", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	frame := func(b []byte) []byte {
		return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
	}
	refused := bindingRequest(t, "gone", "gonepassword0123456789")
	live := bindingRequest(t, "live", "livepassword0123456789")
	media := []byte{0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}
	// Sent in one write: frame boundaries are the gate's to find.
	if _, err := client.Write(append(append(frame(refused.Raw), frame(live.Raw)...), frame(media)...)); err != nil {
		t.Fatal(err)
	}
	// What the mux reads: the live check and the media, framed, in
	// pion's two reads per frame.
	for _, want := range [][]byte{live.Raw, media} {
		header := make([]byte, 2)
		if _, err := io.ReadFull(server, header); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, int(header[0])<<8|int(header[1]))
		if _, err := io.ReadFull(server, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("the mux read %x, want %x", got, want)
		}
	}
	// What the client reads: the refusal of its first check.
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	header := make([]byte, 2)
	if _, err := io.ReadFull(client, header); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, int(header[0])<<8|int(header[1]))
	if _, err := io.ReadFull(client, raw); err != nil {
		t.Fatal(err)
	}
	resp := &stun.Message{Raw: raw}
	if err := resp.Decode(); err != nil {
		t.Fatal(err)
	}
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(resp); err != nil || code.Code != stun.CodeForbidden || resp.TransactionID != refused.TransactionID {
		t.Fatalf("answer %v code %v (%v), want 403 for the refused check", resp.Type, code.Code, err)
	}
}
