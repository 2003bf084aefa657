// Package events builds OpenVidu 2.x's CDR and webhook events: their names,
// fields, key order and null/absent rules as openvidu-server writes them
// (cdr/CDREvent*.java; Pro's node and autoscaling events), plus an "eventId"
// unique to each event so receivers can drop the duplicates that at-least-once
// delivery may cause. (OpenVidu's node events already use "id" for the node.)
//
// The webhook body is the event's fields followed by "event": NAME; a CDR line
// is {"NAME": fields}, the same fields without "event".
package events

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Event names (OpenVidu's CDREventName).
const (
	SessionCreated            = "sessionCreated"
	SessionDestroyed          = "sessionDestroyed"
	ParticipantJoined         = "participantJoined"
	ParticipantLeft           = "participantLeft"
	WebrtcConnectionCreated   = "webrtcConnectionCreated"
	WebrtcConnectionDestroyed = "webrtcConnectionDestroyed"
	RecordingStatusChanged    = "recordingStatusChanged"
	FilterEventDispatched     = "filterEventDispatched"
	SignalSent                = "signalSent"
	MediaNodeStatusChanged    = "mediaNodeStatusChanged"
	Autoscaling               = "autoscaling"
	NodeCrashed               = "nodeCrashed"
	NodeRecovered             = "nodeRecovered"
	BroadcastStarted          = "broadcastStarted"
	BroadcastStopped          = "broadcastStopped"
	HANodeRegistered          = "HANodeRegistered"
	HANodeDeregistered        = "HANodeDeregistered"
)

// DefaultWebhookEvents is OPENVIDU_WEBHOOK_EVENTS's default.
func DefaultWebhookEvents() []string {
	return []string{SessionCreated, SessionDestroyed, ParticipantJoined, ParticipantLeft, WebrtcConnectionCreated,
		WebrtcConnectionDestroyed, RecordingStatusChanged, FilterEventDispatched, SignalSent, MediaNodeStatusChanged,
		Autoscaling, NodeCrashed, NodeRecovered, BroadcastStarted, BroadcastStopped}
}

// Known reports whether name is an OpenVidu event name.
func Known(name string) bool {
	return slices.Contains(append(DefaultWebhookEvents(), HANodeRegistered, HANodeDeregistered), name)
}

// Event is an event being built: its name and fields in order.
type Event struct {
	Name   string
	Fields protocol.Object
}

// Stored finishes the event for the bus: a fresh eventId is added and the
// webhook body encoded.
func (e Event) Stored() store.StoredEvent {
	id := protocol.NewEventID()
	body, err := json.Marshal(e.Fields.With("eventId", id).With("event", e.Name))
	if err != nil {
		panic(fmt.Sprintf("events: encode %s: %v", e.Name, err)) // fields are plain values: cannot fail
	}
	return store.StoredEvent{ID: id, Name: e.Name, Body: body}
}

// CDRLine turns a webhook body into the CDR file's line: {"NAME": fields},
// "event" removed, keys in order.
func CDRLine(name string, body []byte) ([]byte, error) {
	inner := body
	suffix := []byte(`,"event":` + quote(name) + `}`)
	if len(inner) > len(suffix) && string(inner[len(inner)-len(suffix):]) == string(suffix) {
		inner = append(append([]byte(nil), inner[:len(inner)-len(suffix)]...), '}')
	}
	if !json.Valid(inner) {
		return nil, fmt.Errorf("events: %s body is not JSON", name)
	}
	return []byte(`{` + quote(name) + `:` + string(inner) + `}`), nil
}

func quote(s string) string {
	raw, _ := json.Marshal(s)
	return string(raw)
}

// sessionBase is the first fields of every session event.
func sessionBase(s *store.Session, timestamp int64) protocol.Object {
	return protocol.Object{}.
		With("sessionId", s.ID).
		With("uniqueSessionId", fmt.Sprintf("%s_%d", s.ID, s.CreatedAt)).
		With("timestamp", timestamp)
}

// end adds an end event's startTime, duration (whole seconds) and reason.
func end(o protocol.Object, startTime, timestamp int64, reason string) protocol.Object {
	return o.With("startTime", startTime).With("duration", (timestamp-startTime)/1000).With("reason", reason)
}

// NewSessionCreated is emitted when POST /sessions creates a session.
func NewSessionCreated(s *store.Session) Event {
	return Event{SessionCreated, sessionBase(s, s.CreatedAt)}
}

// NewSessionDestroyed is emitted when a session closes.
func NewSessionDestroyed(s *store.Session, now int64, reason string) Event {
	return Event{SessionDestroyed, end(sessionBase(s, now), s.CreatedAt, now, reason)}
}

func participantFields(o protocol.Object, c *store.Connection) protocol.Object {
	return o.With("participantId", c.ID).With("connectionId", c.ID).
		With("location", c.Location).With("ip", c.IP).With("platform", c.Platform).
		With("clientData", c.ClientData).With("serverData", c.ServerData)
}

// NewParticipantJoined is emitted when a participant joins.
func NewParticipantJoined(s *store.Session, c *store.Connection) Event {
	return Event{ParticipantJoined, participantFields(sessionBase(s, c.ActiveAt), c)}
}

// NewParticipantLeft is emitted when a participant leaves or is evicted.
func NewParticipantLeft(s *store.Session, c *store.Connection, now int64, reason string) Event {
	return Event{ParticipantLeft, participantFields(end(sessionBase(s, now), c.ActiveAt, now, reason), c)}
}

// Directions of webrtcConnection events: OUTBOUND is a publisher's peer
// connection, INBOUND a subscriber's.
const (
	Outbound = "OUTBOUND"
	Inbound  = "INBOUND"
)

// WebrtcConnection describes one endpoint for the webrtcConnection events.
type WebrtcConnection struct {
	StreamID      protocol.StreamID
	ConnectionID  protocol.ConnectionID // the endpoint's owner: the subscriber for INBOUND
	Direction     string
	ReceivingFrom protocol.ConnectionID // the publisher, for INBOUND
	CreatedAt     int64
	Media         store.MediaOptions
}

func webrtcFields(o protocol.Object, w WebrtcConnection) protocol.Object {
	o = o.With("streamId", w.StreamID).With("participantId", w.ConnectionID).
		With("connectionId", w.ConnectionID).With("connection", w.Direction)
	if w.Direction == Inbound {
		o = o.With("receivingFrom", w.ReceivingFrom)
	}
	if w.Media.HasVideo {
		var fps any
		if w.Media.FrameRate > 0 {
			fps = w.Media.FrameRate
		}
		var dims any
		if w.Media.VideoDimensions != "" {
			dims = w.Media.VideoDimensions
		}
		o = o.With("videoSource", w.Media.TypeOfVideo).With("videoFramerate", fps).With("videoDimensions", dims)
	}
	return o.With("audioEnabled", w.Media.HasAudio).With("videoEnabled", w.Media.HasVideo)
}

// NewWebrtcConnectionCreated is emitted when a publisher's or a subscriber's
// peer connection is negotiated.
func NewWebrtcConnectionCreated(s *store.Session, w WebrtcConnection) Event {
	return Event{WebrtcConnectionCreated, webrtcFields(sessionBase(s, w.CreatedAt), w)}
}

// NewWebrtcConnectionDestroyed is emitted when it is closed.
func NewWebrtcConnectionDestroyed(s *store.Session, w WebrtcConnection, now int64, reason string) Event {
	return Event{WebrtcConnectionDestroyed, webrtcFields(end(sessionBase(s, now), w.CreatedAt, now, reason), w)}
}

// NewSignalSent is emitted for each signal delivered. from is "" for the
// REST API's signals (null in the event); a participant's type loses its
// "signal:" prefix, as in OpenVidu.
func NewSignalSent(s *store.Session, now int64, from string, to []protocol.ConnectionID, typ, data *string) Event {
	o := sessionBase(s, now)
	var fromV, typV, dataV any
	if from != "" {
		fromV = from
	}
	if typ != nil {
		t := *typ
		if from != "" {
			t = strings.TrimPrefix(t, "signal:")
		}
		typV = t
	}
	if data != nil {
		dataV = *data
	}
	return Event{SignalSent, o.With("from", fromV).With("to", to).With("type", typV).With("data", dataV)}
}

// MediaNode describes a media node in cluster events.
type MediaNode struct {
	ID            string // a media node's or a master's id
	EnvironmentID string // "" is null
	IP            string
	URI           string
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// NewMediaNodeStatusChanged is emitted on every media node status
// transition; oldStatus "" is null (a node just launching).
func NewMediaNodeStatusChanged(now int64, clusterID string, n MediaNode, oldStatus, newStatus string) Event {
	return Event{MediaNodeStatusChanged, protocol.Object{}.With("timestamp", now).With("id", n.ID).
		With("environmentId", nullable(n.EnvironmentID)).With("ip", n.IP).With("uri", n.URI).
		With("newStatus", newStatus).With("oldStatus", nullable(oldStatus)).With("clusterId", clusterID)}
}

// Node roles of nodeCrashed and nodeRecovered.
const (
	RoleMediaNode  = "medianode"
	RoleMasterNode = "masternode"
)

// NewNodeCrashed is emitted once when a media or master node is declared dead.
func NewNodeCrashed(now int64, clusterID string, n MediaNode, role string, timeOfDisconnection int64, sessionIDs []protocol.SessionID) Event {
	o := protocol.Object{}.With("timestamp", now).With("id", n.ID)
	if n.EnvironmentID != "" {
		o = o.With("environmentId", n.EnvironmentID)
	}
	if sessionIDs == nil {
		sessionIDs = []protocol.SessionID{}
	}
	return Event{NodeCrashed, o.With("ip", n.IP).With("uri", n.URI).With("nodeRole", role).
		With("timeOfDisconnection", timeOfDisconnection).With("clusterId", clusterID).
		With("sessionIds", sessionIDs).With("recordingIds", []string{}).With("broadcasts", []string{})}
}

// NewNodeRecovered is emitted when a node declared crashed answers again.
func NewNodeRecovered(now int64, clusterID string, n MediaNode, role string) Event {
	o := protocol.Object{}.With("timestamp", now).With("id", n.ID)
	if n.EnvironmentID != "" {
		o = o.With("environmentId", n.EnvironmentID)
	}
	return Event{NodeRecovered, o.With("ip", n.IP).With("uri", n.URI).With("nodeRole", role).With("clusterId", clusterID)}
}
