package medianode

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/chorus-rtc/chorus/medianode/sfu"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
)

// maxRequestBytes bounds an internal API request (an SDP is ~10 KB).
const maxRequestBytes = 1 << 20

func (n *Node) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !mediaapi.Authorized(r, n.secret) {
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong cluster secret"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (n *Node) handlePublish(w http.ResponseWriter, r *http.Request) {
	var req mediaapi.PublishRequest
	if !decode(w, r, &req) {
		return
	}
	if req.SessionID == "" || req.StreamID == "" {
		writeError(w, http.StatusBadRequest, errors.New("sessionId and streamId are required"))
		return
	}
	answer, err := n.sfu.Publish(r.Context(), req)
	if err != nil {
		writeSFUError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, mediaapi.SDPAnswer{SDPAnswer: answer})
}

func (n *Node) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	var req mediaapi.SubscribeRequest
	if !decode(w, r, &req) {
		return
	}
	if req.SessionID == "" || req.StreamID == "" || req.EndpointID == "" {
		writeError(w, http.StatusBadRequest, errors.New("sessionId, endpointId and streamId are required"))
		return
	}
	offer, err := n.sfu.Subscribe(r.Context(), req)
	if err != nil {
		writeSFUError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, mediaapi.SDPOffer{SDPOffer: offer})
}

func (n *Node) handleAnswer(w http.ResponseWriter, r *http.Request) {
	var req mediaapi.SDPAnswer
	if !decode(w, r, &req) {
		return
	}
	if err := n.sfu.Answer(r.Context(), r.URL.Query().Get("session"), r.PathValue("id"), req.SDPAnswer); err != nil {
		writeSFUError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleICE(w http.ResponseWriter, r *http.Request) {
	var req mediaapi.ICECandidate
	if !decode(w, r, &req) {
		return
	}
	if err := n.sfu.AddICECandidate(req.SessionID, r.PathValue("id"), req); err != nil {
		writeSFUError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleRelease(w http.ResponseWriter, r *http.Request) {
	n.sfu.Release(r.URL.Query().Get("session"), r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleReleaseSession(w http.ResponseWriter, r *http.Request) {
	n.sfu.ReleaseSession(r.PathValue("sid"), r.URL.Query().Get("moved") == "true")
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleEndpoints(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, mediaapi.EndpointList{Endpoints: n.sfu.Endpoints()})
}

func (n *Node) handleNetworkQuality(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, mediaapi.NetworkQuality{Connections: n.sfu.NetworkQuality()})
}

func (n *Node) handleHealth(w http.ResponseWriter, _ *http.Request) {
	sessions, endpoints := n.sfu.Counts()
	writeJSON(w, http.StatusOK, mediaapi.Health{
		ID: string(n.id), Load: math.Float64frombits(n.currentLoad.Load()), Sessions: sessions, Endpoints: endpoints,
	})
}

// handleLiveness writes a line every mediaapi.LivenessInterval until the
// master hangs up or the node stops: the cluster's controller holds one
// open to each node, and its end, when this process dies, is how a crash is
// detected in milliseconds (mediaapi.Client.WatchLiveness).
func (n *Node) handleLiveness(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// http.read_timeout bounds request bodies; this request has none and
	// lasts as long as the node.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(mediaapi.LivenessInterval)
	defer tick.Stop()
	for {
		if _, err := io.WriteString(w, "alive\n"); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-n.stopping:
			return
		case <-tick.C:
		}
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return false
	}
	return true
}

func writeSFUError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, sfu.ErrCodecNotOffered):
		writeCodedError(w, http.StatusBadRequest, mediaapi.CodeCodecNotOffered, err)
	case errors.Is(err, sfu.ErrBadSDP):
		writeCodedError(w, http.StatusBadRequest, mediaapi.CodeBadSDP, err)
	case errors.Is(err, sfu.ErrUnknownEndpoint), errors.Is(err, sfu.ErrUnknownStream):
		writeCodedError(w, http.StatusNotFound, mediaapi.CodeUnknown, err)
	case errors.Is(err, sfu.ErrEndpointExists):
		writeCodedError(w, http.StatusConflict, mediaapi.CodeExists, err)
	case errors.Is(err, sfu.ErrClosed):
		writeCodedError(w, http.StatusServiceUnavailable, mediaapi.CodeUnavailable, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeCodedError(w, status, "", err)
}

func writeCodedError(w http.ResponseWriter, status int, code string, err error) {
	writeJSON(w, status, mediaapi.Error{Code: code, Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
