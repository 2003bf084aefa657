package medianode

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// loadMeter measures the CPU load of the node's own process, 0-100, where 100
// means every CPU the process may use (GOMAXPROCS, which Go derives from the
// CPU affinity mask and the container's CPU quota) is busy. Several nodes may
// share a host, so the host's load would be wrong.
//
// The reported load is the mean of the last loadWindow samples, as OpenVidu
// Pro averages its last three CPU samples: placement and autoscaling should
// not jump at one busy second.
type loadMeter struct {
	proc *process.Process
	cpus float64
	loadSamples
}

const (
	loadWindow = 3
	// minLoadInterval is the shortest interval a sample may cover. The
	// kernel counts CPU time in clock ticks (10 ms), so a sample over a few
	// milliseconds reads 0 % or several hundred: a node's first heartbeat,
	// right after start, reported 100 % and made the autoscaler launch a node.
	minLoadInterval = 250 * time.Millisecond
)

func newLoadMeter() (*loadMeter, error) {
	p, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("open own process: %w", err)
	}
	m := &loadMeter{proc: p, cpus: float64(runtime.GOMAXPROCS(0))}
	if _, err := m.sample(); err != nil {
		return nil, err
	}
	return m, nil
}

// sample measures the load since the previous sample and returns the mean
// of the recent ones.
func (m *loadMeter) sample() (float64, error) {
	t, err := m.proc.Times()
	if err != nil {
		return 0, fmt.Errorf("read CPU times: %w", err)
	}
	return m.add(t.User+t.System, time.Now(), m.cpus), nil
}

// loadSamples turns readings of a process's CPU time into a load averaged
// over the last loadWindow intervals.
type loadSamples struct {
	lastCPU  float64 // user+system seconds
	lastTime time.Time
	recent   []float64 // the last loadWindow samples, oldest first
}

// add records the process's CPU time (seconds) read at now, on cpus CPUs, and
// returns the mean load of the recent intervals (0 before the first one).
// A reading less than minLoadInterval after the previous one is ignored.
func (s *loadSamples) add(cpu float64, now time.Time, cpus float64) float64 {
	switch elapsed := now.Sub(s.lastTime).Seconds(); {
	case s.lastTime.IsZero():
		s.lastCPU, s.lastTime = cpu, now
	case elapsed >= minLoadInterval.Seconds():
		load := 100 * (cpu - s.lastCPU) / (elapsed * cpus)
		s.lastCPU, s.lastTime = cpu, now
		if len(s.recent) == loadWindow {
			s.recent = s.recent[1:]
		}
		s.recent = append(s.recent, min(max(load, 0), 100))
	}
	if len(s.recent) == 0 {
		return 0
	}
	var sum float64
	for _, l := range s.recent {
		sum += l
	}
	return sum / float64(len(s.recent))
}

// cpuSeconds is the process's total CPU time, for the metrics.
func (m *loadMeter) cpuSeconds() float64 {
	t, err := m.proc.Times()
	if err != nil {
		return 0
	}
	return t.User + t.System
}
