package restapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSessionPropertiesFromBody(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string
		check   func(t *testing.T, raw string)
	}{
		{name: "empty body", body: ""},
		{name: "node-client defaults", body: `{"mediaMode":"ROUTED","recordingMode":"MANUAL","customSessionId":"","defaultRecordingProperties":{"name":"","hasAudio":true,"hasVideo":true,"outputMode":"COMPOSED","recordingLayout":"BEST_FIT","resolution":"1280x720","frameRate":25,"shmSize":536870912}}`},
		{name: "java-client nulls", body: `{"mediaMode":null,"recordingMode":null,"customSessionId":null,"forcedVideoCodec":null,"allowTranscoding":null,"mediaNode":null,"defaultRecordingProperties":null}`},
		{name: "custom id", body: `{"customSessionId":"My_Session-1"}`, check: func(t *testing.T, raw string) {
			if !strings.Contains(raw, `"customSessionId":"My_Session-1"`) {
				t.Error(raw)
			}
		}},
		{name: "custom id with a space", body: `{"customSessionId":"a b"}`, wantErr: "Parameter 'customSessionId' is wrong"},
		{name: "custom id with a dot", body: `{"customSessionId":"a.b"}`, wantErr: "Parameter 'customSessionId' is wrong"},
		{name: "custom id not a string", body: `{"customSessionId":5}`, wantErr: "Type error in some parameter"},
		{name: "unknown media mode", body: `{"mediaMode":"P2P"}`, wantErr: "io.openvidu.java.client.MediaMode.P2P"},
		{name: "unknown recording mode", body: `{"recordingMode":"NEVER"}`, wantErr: "RecordingMode.NEVER"},
		{name: "unknown codec", body: `{"forcedVideoCodec":"AV1"}`, wantErr: "VideoCodec.AV1"},
		{name: "VP9 refused", body: `{"forcedVideoCodec":"VP9"}`, wantErr: "VP9 is not supported"},
		{name: "H264", body: `{"forcedVideoCodec":"H264","allowTranscoding":true}`, check: func(t *testing.T, raw string) {
			if !strings.Contains(raw, `"forcedVideoCodec":"H264"`) || !strings.Contains(raw, `"allowTranscoding":true`) {
				t.Error(raw)
			}
		}},
		{name: "transcoding not a bool", body: `{"allowTranscoding":"yes"}`, wantErr: "Type error in some parameter"},
		{name: "recording properties not an object", body: `{"defaultRecordingProperties":[]}`, wantErr: "It is not a valid JSON object"},
		{name: "bad resolution", body: `{"defaultRecordingProperties":{"resolution":"99x99"}}`, wantErr: "Wrong 'resolution' parameter"},
		{name: "bad frame rate", body: `{"defaultRecordingProperties":{"frameRate":121}}`, wantErr: "Wrong 'frameRate' parameter"},
		{name: "no audio nor video", body: `{"defaultRecordingProperties":{"hasAudio":false,"hasVideo":false}}`, wantErr: `both "hasAudio" and "hasVideo"`},
		{name: "individual recording", body: `{"defaultRecordingProperties":{"outputMode":"INDIVIDUAL"}}`, check: func(t *testing.T, raw string) {
			if !strings.Contains(raw, `"ignoreFailedStreams":false`) || strings.Contains(raw, "recordingLayout") {
				t.Error(raw)
			}
		}},
		{name: "media node", body: `{"mediaNode":{"id":"media_1"}}`, check: func(t *testing.T, raw string) {
			if !strings.Contains(raw, `"mediaNodeRequested":"media_1"`) {
				t.Error(raw)
			}
		}},
		{name: "media node without id", body: `{"mediaNode":{}}`, wantErr: "Property 'id' not found"},
		{name: "media node id not a string", body: `{"mediaNode":{"id":1}}`, wantErr: "mediaNode.id"},
		{name: "not JSON", body: `{"mediaMode":`, wantErr: "Not a valid JSON object"},
		{name: "JSON array", body: `[]`, wantErr: "Not a valid JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := SessionPropertiesFromBody([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.MediaMode != "ROUTED" && p.MediaMode != "RELAYED" {
				t.Errorf("mediaMode %q", p.MediaMode)
			}
			raw, _ := json.Marshal(p)
			if tt.check != nil {
				tt.check(t, string(raw))
			}
		})
	}
}

func TestConnectionPropertiesFromBody(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string
		want    string // substring of the properties as JSON
	}{
		{name: "defaults", body: `{}`, want: `"Role":"PUBLISHER"`},
		{name: "node-client nulls", body: `{"type":null,"data":null,"record":null,"role":null,"kurentoOptions":null,"rtspUri":null,"adaptativeBitrate":null,"onlyPlayWithSubscribers":null,"networkCache":null,"customIceServers":null}`, want: `"Record":true`},
		{name: "moderator with data", body: `{"role":"MODERATOR","data":"srv","record":false}`, want: `"Data":"srv","Record":false,"Role":"MODERATOR"`},
		{name: "unknown role", body: `{"role":"ADMIN"}`, wantErr: "Parameter role ADMIN is not defined"},
		{name: "role not a string", body: `{"role":1}`, wantErr: "Type error in parameter 'role'"},
		{name: "record not a bool", body: `{"record":"WRONG"}`, wantErr: "Type error in parameter 'record'"},
		{name: "unknown type", body: `{"type":"SIP"}`, wantErr: "Parameter 'type' SIP is not defined"},
		{name: "ip cameras unsupported", body: `{"type":"IPCAM","rtspUri":"rtsp://cam"}`, wantErr: "IPCAM are not supported"},
		{name: "kurento options", body: `{"kurentoOptions":{"videoMaxRecvBandwidth":1000,"allowedFilters":["GStreamerFilter"]}}`, want: `allowedFilters`},
		{name: "kurento options not an object", body: `{"kurentoOptions":false}`, wantErr: "'kurentoOptions'. It is not a valid JSON object"},
		{name: "allowed filters not a list", body: `{"kurentoOptions":{"allowedFilters":"x"}}`, wantErr: "Not a JSON Array"},
		{name: "stun server", body: `{"customIceServers":[{"url":"stun:stun.example.org:3478"}]}`, want: `stun:stun.example.org`},
		{name: "turn without credentials", body: `{"customIceServers":[{"url":"turn:bad-ice-server"}]}`, wantErr: "Credentials must be defined"},
		{name: "ice server without colon", body: `{"customIceServers":[{"url":"bad-ice-server"}]}`, wantErr: "No colons found"},
		{name: "ice server bad scheme", body: `{"customIceServers":[{"url":"bad-prefix:bad-ice-server"}]}`, wantErr: "The protocol 'bad-prefix' is invalid"},
		{name: "ice servers not a list", body: `{"customIceServers":{"url":"stun:x"}}`, wantErr: "customIceServersJson"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := parseBody([]byte(tt.body), true)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ConnectionPropertiesFromBody(b)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(p)
			if !strings.Contains(string(raw), tt.want) {
				t.Errorf("%s does not contain %s", raw, tt.want)
			}
		})
	}
}

func TestSignalFromBody(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
		wantTo              int
	}{
		{name: "broadcast", body: `{"session":"s","type":"t","data":"d"}`},
		{name: "to two", body: `{"session":"s","to":["con_a","con_b"]}`, wantTo: 2},
		{name: "null recipient", body: `{"session":"s","to":[null]}`, wantTo: 1},
		{name: "no session", body: `{"data":"d"}`, wantErr: `"session" parameter is mandatory`},
		{name: "session not a string", body: `{"session":true}`, wantErr: "Type error in some parameter"},
		{name: "to not a list", body: `{"session":"s","to":"con_a"}`, wantErr: "Type error in some parameter"},
		{name: "empty body", body: ``, wantErr: "Cannot be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, to, _, _, err := SignalFromBody([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(to) != tt.wantTo {
				t.Fatalf("to %v, err %v", to, err)
			}
		})
	}
}

func FuzzSessionProperties(f *testing.F) {
	for _, seed := range []string{``, `{}`, `{"customSessionId":"a"}`, `{"defaultRecordingProperties":{"outputMode":"INDIVIDUAL"}}`, `{"mediaNode":{"id":"x"}}`, `[`, `{"forcedVideoCodec":"H264"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := SessionPropertiesFromBody(raw)
		if err != nil {
			return
		}
		if p.CustomSessionID != "" && !customSessionIDPattern.MatchString(p.CustomSessionID) {
			t.Fatalf("accepted custom id %q", p.CustomSessionID)
		}
		if len(p.DefaultRecordingProperties) > 0 && !json.Valid(p.DefaultRecordingProperties) {
			t.Fatalf("invalid recording properties %s", p.DefaultRecordingProperties)
		}
	})
}

func FuzzConnectionProperties(f *testing.F) {
	for _, seed := range []string{`{}`, `{"role":"MODERATOR"}`, `{"kurentoOptions":{"allowedFilters":["a"]}}`, `{"customIceServers":[{"url":"turn:h:3478","username":"u","credential":"c"}]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := parseBody(raw, true)
		if err != nil {
			return
		}
		p, err := ConnectionPropertiesFromBody(b)
		if err != nil {
			return
		}
		for _, field := range [][]byte{p.KurentoOptions, p.CustomIceServers} {
			if len(field) > 0 && !json.Valid(field) {
				t.Fatalf("invalid JSON kept: %s", field)
			}
		}
	})
}

func FuzzSignal(f *testing.F) {
	for _, seed := range []string{`{"session":"s"}`, `{"session":"s","to":["a",null]}`, `{`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		sid, _, _, _, err := SignalFromBody(raw)
		if err == nil && sid == "" && !strings.Contains(string(raw), `"session"`) {
			t.Fatalf("accepted a signal without session: %s", raw)
		}
	})
}
