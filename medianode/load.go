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
	proc     *process.Process
	lastCPU  float64 // user+system seconds
	lastTime time.Time
	recent   []float64 // the last loadWindow samples, oldest first
}

const loadWindow = 3

func newLoadMeter() (*loadMeter, error) {
	p, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("open own process: %w", err)
	}
	m := &loadMeter{proc: p}
	if _, err := m.sample(); err != nil {
		return nil, err
	}
	m.recent = m.recent[:0] // the first sample has no interval
	return m, nil
}

// sample measures the load since the previous sample and returns the mean
// of the recent ones.
func (m *loadMeter) sample() (float64, error) {
	t, err := m.proc.Times()
	if err != nil {
		return 0, fmt.Errorf("read CPU times: %w", err)
	}
	now := time.Now()
	cpu := t.User + t.System
	var load float64
	if !m.lastTime.IsZero() {
		elapsed := now.Sub(m.lastTime).Seconds()
		if elapsed > 0 {
			load = 100 * (cpu - m.lastCPU) / (elapsed * float64(runtime.GOMAXPROCS(0)))
		}
	}
	m.lastCPU, m.lastTime = cpu, now
	if len(m.recent) == loadWindow {
		m.recent = m.recent[1:]
	}
	m.recent = append(m.recent, min(max(load, 0), 100))
	var sum float64
	for _, l := range m.recent {
		sum += l
	}
	return sum / float64(len(m.recent)), nil
}

// cpuSeconds is the process's total CPU time, for the metrics.
func (m *loadMeter) cpuSeconds() float64 {
	t, err := m.proc.Times()
	if err != nil {
		return 0
	}
	return t.User + t.System
}
