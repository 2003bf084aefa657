package protocol

// Media node statuses, as OpenVidu Pro names them (openvidu-pro scalability
// docs, "Media Node statuses").
const (
	NodeLaunching   = "launching"
	NodeCanceled    = "canceled"
	NodeFailed      = "failed"
	NodeRunning     = "running"
	NodeWaitingIdle = "waiting-idle-to-terminate"
	NodeTerminating = "terminating"
	NodeTerminated  = "terminated"
)
