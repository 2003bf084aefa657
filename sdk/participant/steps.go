package participant

import (
	"sync"
	"time"
)

// Step names: what a join, a publication and a subscription wait for, in
// the order they happen (Steps).
const (
	// StepWebSocket: the JSON-RPC WebSocket is open (through the proxy).
	StepWebSocket = "websocket"
	// StepJoinRoom: joinRoom answered.
	StepJoinRoom = "joinRoom"
	// StepPrepare: prepareReceiveVideoFrom answered with the media node's
	// offer.
	StepPrepare = "prepareReceiveVideoFrom"
	// StepGather: the local description is set and its candidates gathered
	// (or maxGatherWait passed).
	StepGather = "gather"
	// StepPublishVideo: publishVideo answered with the media node's answer.
	StepPublishVideo = "publishVideo"
	// StepReceiveVideo: receiveVideoFrom answered.
	StepReceiveVideo = "receiveVideoFrom"
	// StepICE: ICE connected (a candidate pair answered its checks).
	StepICE = "ice"
	// StepConnected: the peer connection is connected (DTLS done, SRTP
	// keys derived).
	StepConnected = "connected"
)

// Step is when one step of a negotiation ended.
type Step struct {
	Name string
	At   time.Time
}

// Steps record when the steps of a participant's first negotiation of
// something (its join, a publication, a subscription) ended, each name
// once: later negotiations of the same thing (recoveries) do not move them.
// Safe for concurrent use.
type Steps struct {
	mu    sync.Mutex
	start time.Time
	list  []Step
}

func newSteps() *Steps { return &Steps{start: time.Now()} }

// mark records that step name ended now, unless it was recorded before.
func (s *Steps) mark(name string) {
	if s == nil {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.list {
		if st.Name == name {
			return
		}
	}
	s.list = append(s.list, Step{Name: name, At: now})
}

// List returns when the negotiation started and its steps so far, in the
// order they ended.
func (s *Steps) List() (start time.Time, steps []Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start, append([]Step(nil), s.list...)
}
