package participant

import (
	"testing"
	"time"
)

func TestStepsKeepTheFirstNegotiation(t *testing.T) {
	s := newSteps()
	s.mark(StepGather)
	time.Sleep(2 * time.Millisecond)
	s.mark(StepICE)
	first := time.Now()
	time.Sleep(2 * time.Millisecond)
	s.mark(StepGather) // a recovery's negotiation: not recorded
	var none *Steps
	none.mark(StepICE) // a negotiation nobody records

	start, steps := s.List()
	if len(steps) != 2 || steps[0].Name != StepGather || steps[1].Name != StepICE {
		t.Fatalf("steps %+v, want gather then ice", steps)
	}
	if steps[0].At.Before(start) || !steps[1].At.After(steps[0].At) || steps[1].At.After(first) {
		t.Errorf("times out of order: start %v, %+v", start, steps)
	}
}
