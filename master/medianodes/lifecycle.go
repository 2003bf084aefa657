// Package medianodes manages the cluster's media nodes as OpenVidu Pro does:
// their lifecycle (launching, canceled, failed, running,
// waiting-idle-to-terminate, terminating, terminated), launching and dropping
// them through a provider (static, process, docker), detecting their crashes,
// moving or closing the sessions of nodes that crash or leave, and
// autoscaling. Every status change is stored with its mediaNodeStatusChanged
// event in one transaction.
package medianodes

import (
	"slices"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// The statuses, re-exported for readability.
const (
	Launching   = protocol.NodeLaunching
	Canceled    = protocol.NodeCanceled
	Failed      = protocol.NodeFailed
	Running     = protocol.NodeRunning
	WaitingIdle = protocol.NodeWaitingIdle
	Terminating = protocol.NodeTerminating
	Terminated  = protocol.NodeTerminated
)

// Statuses lists every status in lifecycle order.
func Statuses() []string {
	return []string{Launching, Canceled, Failed, Running, WaitingIdle, Terminating, Terminated}
}

// transitions lists, for each status, the statuses it may go to (OpenVidu
// Pro's scalability page, "Media Node statuses"). "" is a node the cluster
// does not know yet: its only way in is launching.
func transitions(from string) []string {
	switch from {
	case "":
		return []string{Launching}
	case Launching:
		return []string{Running, Canceled, Failed}
	case Canceled:
		return []string{Launching, Terminating}
	case Running:
		return []string{WaitingIdle, Terminating}
	case WaitingIdle:
		return []string{Running, Terminating}
	case Terminating:
		return []string{Terminated}
	}
	return nil // failed and terminated are final
}

// Allowed reports whether a node may go from one status to another.
func Allowed(from, to string) bool { return slices.Contains(transitions(from), to) }

// Serving reports whether a node carries sessions and can be called:
// running or waiting to be idle, not crashed, with its internal URL known.
func Serving(n store.MediaNodeInfo) bool {
	return (n.Status == Running || n.Status == WaitingIdle) && !n.Crashed() && n.URI != ""
}

// Valid reports whether s is a status name.
func Valid(s string) bool { return slices.Contains(Statuses(), s) }
