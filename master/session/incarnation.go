package session

import (
	"sync"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Incarnation is the identity under which this master process owns
// WebSockets: its configured id and an epoch, "master_1.3". Connection
// records, the master's registration and its wake-up channel use it. When
// the cluster declares the master dead (it stopped answering, or its
// registration lapsed), the master that is in fact still alive fences itself:
// it closes its sockets and comes back under a new incarnation, so nothing
// it owned before can be acted on under the old one.
type Incarnation struct {
	mu      sync.Mutex
	id      protocol.MasterID
	changed chan struct{}
}

// NewIncarnation returns an incarnation set to id.
func NewIncarnation(id protocol.MasterID) *Incarnation {
	return &Incarnation{id: id, changed: make(chan struct{})}
}

// ID is the current incarnation.
func (i *Incarnation) ID() protocol.MasterID {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.id
}

// Changed is closed when the incarnation changes.
func (i *Incarnation) Changed() <-chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.changed
}

// Set replaces the incarnation.
func (i *Incarnation) Set(id protocol.MasterID) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if id == i.id {
		return
	}
	i.id = id
	close(i.changed)
	i.changed = make(chan struct{})
}
