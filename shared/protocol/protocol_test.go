package protocol

import (
	"encoding"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"testing"
)

func TestIDs(t *testing.T) {
	checks := []struct {
		name string
		gen  func() string
		re   string
	}{
		{"session", func() string { return string(NewSessionID()) }, `^ses_[A-Z][A-Za-z0-9]{9}$`},
		{"connection", func() string { return string(NewConnectionID()) }, `^con_[A-Za-z0-9]{10}$`},
		{"token", NewToken, `^tok_[A-Za-z0-9]{24}$`},
		{"rpc session", NewRPCSessionID, `^[A-Za-z0-9]{32}$`},
		{"media node", func() string { return string(NewMediaNodeID()) }, `^media_[A-Za-z0-9]{10}$`},
	}
	for _, c := range checks {
		seen := map[string]bool{}
		re := regexp.MustCompile(c.re)
		for i := 0; i < 1000; i++ {
			id := c.gen()
			if !re.MatchString(id) || seen[id] {
				t.Fatalf("%s id %q (repeated: %v)", c.name, id, seen[id])
			}
			seen[id] = true
		}
	}
	stream := NewStreamID("CAMERA", "con_abcdefghij")
	if !regexp.MustCompile(`^str_CAM_[A-Za-z0-9]{4}_con_abcdefghij$`).MatchString(string(stream)) || ConnectionOfStream(stream) != "con_abcdefghij" {
		t.Errorf("stream id %q", stream)
	}
	if ConnectionOfStream("con_abcdefghij") != "" || ConnectionOfStream("str_x") != "" {
		t.Error("ConnectionOfStream accepted a non-stream id")
	}
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		frame string
		code  int
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"ping"}`, 0},
		{`{"jsonrpc":"2.0","id":"a","method":"joinRoom","params":{}}`, 0},
		{`{"jsonrpc":"2.0","id":1,"method":"ping"} {}`, CodeParseError},
		{`nope`, CodeParseError},
		{`{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest},
		{`{"id":1,"method":"ping"}`, CodeInvalidRequest},
		{`{"jsonrpc":"2.0","id":[1],"method":"ping"}`, CodeInvalidRequest},
	}
	for _, tt := range tests {
		_, err := DecodeRequest([]byte(tt.frame))
		switch {
		case tt.code == 0 && err != nil:
			t.Errorf("%s: %v", tt.frame, err)
		case tt.code != 0 && (err == nil || err.Code != tt.code):
			t.Errorf("%s: %v, want code %d", tt.frame, err, tt.code)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"interval":5000}}`, `{"jsonrpc":"2.0","id":"x","method":"joinRoom"}`, `{`, `[]`, `{"jsonrpc":"2.0","method":"","id":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, err := DecodeRequest(frame)
		if err != nil {
			if _, merr := json.Marshal(Response{ID: json.RawMessage("null"), Error: err, JSONRPC: "2.0"}); merr != nil {
				t.Fatalf("cannot encode the error answer: %v", merr)
			}
			return
		}
		if req.Method == "" || req.JSONRPC != "2.0" {
			t.Fatalf("accepted %q", frame)
		}
		if len(req.ID) > 0 && !json.Valid(req.ID) {
			t.Fatalf("id %q is not JSON", req.ID)
		}
		var p JoinRoomParams
		_ = DecodeParams(req.Params, &p)
	})
}

// TestIDsAreRedisArguments: go-redis refuses named string types unless they
// implement encoding.BinaryMarshaler; ids go to Redis as they are.
func TestIDsAreRedisArguments(t *testing.T) {
	for _, id := range []encoding.BinaryMarshaler{SessionID("ses_A"), ConnectionID("con_B"), StreamID("str_C"), NodeID("media_D"), MasterID("master_E")} {
		b, err := id.MarshalBinary()
		if err != nil || string(b) != fmt.Sprint(id) {
			t.Errorf("%v: %q, %v", id, b, err)
		}
	}
}

// FuzzJoinRoomParams checks joinRoom's params decoding: it never panics;
// what it accepts has every mandatory parameter as sent and a valid session
// id; what it refuses is invalid params or an impossible session. Seeded
// with openvidu-browser's joinRoom (Session.initializeParams).
func FuzzJoinRoomParams(f *testing.F) {
	for _, s := range []string{
		`{"token":"wss://localhost:4443?sessionId=ses_Ab12&token=tok_XyZ0123456789abcdefghijk&edition=pro","session":"ses_Ab12","platform":"Chrome 120.0.0.0 on Linux 64-bit","sdkVersion":"2.32.2","metadata":"{\"clientData\":\"Alice\"}","secret":"","recorder":false,"stt":false}`,
		`{"token":"","session":"s","platform":"unknown","metadata":"","secret":"MY_SECRET","recorder":true}`,
		`{"token":"t","session":"s","platform":"Chorus Go participant","metadata":"","chorusFeatures":["reconnectPublisher","reconnectPublisher","unknown"]}`,
		`{"token":7}`, `{"session":"a b","token":"","platform":"","metadata":""}`, `null`, `[]`, ``, `{"token":null,"session":"s","platform":"p","metadata":"m"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		j, rerr := DecodeJoinRoom(raw)
		if rerr != nil {
			if rerr.Code != CodeInvalidParams && rerr.Code != CodeRoomNotFound {
				t.Fatalf("error code %d: %s", rerr.Code, rerr.Message)
			}
			if _, err := json.Marshal(rerr); err != nil {
				t.Fatalf("cannot encode %v: %v", rerr, err)
			}
			return
		}
		if !ValidID(j.Session) {
			t.Fatalf("accepted session %q", j.Session)
		}
		var p JoinRoomParams
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("accepted undecodable params %q: %v", raw, err)
		}
		if p.Token == nil || p.Platform == nil || p.Metadata == nil || *p.Token != j.Token || *p.Platform != j.Platform || *p.Metadata != j.Metadata {
			t.Fatalf("decoded %+v from %q", j, raw)
		}
		// Features: only known ones, once each, and each one asked for.
		want := slices.Contains(p.ChorusFeatures, FeatureReconnectPublisher)
		if got := j.Features; (want && !slices.Equal(got, []string{FeatureReconnectPublisher})) || (!want && len(got) != 0) {
			t.Fatalf("features %q from %q", got, p.ChorusFeatures)
		}
	})
}
