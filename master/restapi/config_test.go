package restapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/chorus-rtc/chorus/master/restapi"
)

// TestConfigReportsTURN: GET /openvidu/api/config reports the TURN servers
// masters hand to participants as OpenVidu reports its coturn: COTURN_IP and
// COTURN_PORT (the first turn: URL's, else the first turns: URL's) and
// OPENVIDU_WEBRTC_ICE_SERVERS ("url=..." elements, as its .env setting, the
// secret left out); without TURN URLs none of the three.
func TestConfigReportsTURN(t *testing.T) {
	tests := []struct {
		name string
		urls []string
		want map[string]any // expected fields; nil value: absent
	}{
		{"no TURN", nil, map[string]any{"COTURN_IP": nil, "COTURN_PORT": nil, "OPENVIDU_WEBRTC_ICE_SERVERS": nil}},
		{"chorus dev's", []string{"turn:10.213.0.1:34781?transport=udp", "turn:10.213.0.1:34781?transport=tcp", "turns:10.213.0.1:34790?transport=tcp"},
			map[string]any{"COTURN_IP": "10.213.0.1", "COTURN_PORT": float64(34781), "OPENVIDU_WEBRTC_ICE_SERVERS": []any{
				"url=turn:10.213.0.1:34781?transport=udp", "url=turn:10.213.0.1:34781?transport=tcp", "url=turns:10.213.0.1:34790?transport=tcp"}}},
		{"TLS first, default port", []string{"turns:turn.example.org?transport=tcp", "turn:turn.example.org"},
			map[string]any{"COTURN_IP": "turn.example.org", "COTURN_PORT": float64(3478)}},
		{"TLS only", []string{"turns:turn.example.org:443?transport=tcp"},
			map[string]any{"COTURN_IP": "turn.example.org", "COTURN_PORT": float64(443)}},
		{"IPv6", []string{"turn:[2001:db8::1]:3478?transport=udp"},
			map[string]any{"COTURN_IP": "2001:db8::1", "COTURN_PORT": float64(3478)}},
		{"STUN only", []string{"stun:stun.example.org:3478"},
			map[string]any{"COTURN_IP": nil, "COTURN_PORT": nil, "OPENVIDU_WEBRTC_ICE_SERVERS": []any{"url=stun:stun.example.org:3478"}}},
	}
	gin.SetMode(gin.TestMode)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := gin.New()
			restapi.New(restapi.Config{Secret: "config-test-secret", PublicURL: "wss://video.example.org", TURNURLs: tt.urls}).Register(r)
			req := httptest.NewRequest(http.MethodGet, "/openvidu/api/config", nil)
			req.SetBasicAuth("OPENVIDUAPP", "config-test-secret")
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				v, ok := got[k]
				if want == nil {
					if ok {
						t.Errorf("%s = %v, want it absent", k, v)
					}
					continue
				}
				if !reflect.DeepEqual(v, want) {
					t.Errorf("%s = %#v, want %#v", k, v, want)
				}
			}
			if got["DOMAIN_OR_PUBLIC_IP"] != "video.example.org" {
				t.Errorf("DOMAIN_OR_PUBLIC_IP = %v", got["DOMAIN_OR_PUBLIC_IP"])
			}
		})
	}
}

// TestConfigReportsSimulcast: OPENVIDU_WEBRTC_SIMULCAST in GET /config is
// the master's setting (what joinRoom tells publishers), not a constant.
func TestConfigReportsSimulcast(t *testing.T) {
	gin.SetMode(gin.TestMode)
	for _, on := range []bool{false, true} {
		r := gin.New()
		restapi.New(restapi.Config{Secret: "config-test-secret", PublicURL: "wss://video.example.org", VideoSimulcast: on}).Register(r)
		req := httptest.NewRequest(http.MethodGet, "/openvidu/api/config", nil)
		req.SetBasicAuth("OPENVIDUAPP", "config-test-secret")
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		var got map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("status %d, %v: %s", rec.Code, err, rec.Body)
		}
		if got["OPENVIDU_WEBRTC_SIMULCAST"] != on {
			t.Errorf("with VideoSimulcast %v, OPENVIDU_WEBRTC_SIMULCAST = %#v", on, got["OPENVIDU_WEBRTC_SIMULCAST"])
		}
	}
}
