package medianodes

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

func ids(nodes []PlanNode) []protocol.NodeID {
	out := []protocol.NodeID{}
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

func node(id protocol.NodeID, status string, load float64, launchingTime int64) PlanNode {
	return PlanNode{ID: id, Status: status, Load: load, LaunchingTime: launchingTime}
}

// TestPlan runs the autoscaling algorithm on OpenVidu's documented cases
// (their reasons verbatim) and on the choices the documents leave open.
func TestPlan(t *testing.T) {
	limits := func(minN, maxN int) PlanConfig {
		return PlanConfig{MinNodes: minN, MaxNodes: maxN, MinAvgLoad: 30, MaxAvgLoad: 70}
	}
	type want struct {
		revive, uncancel, cancel, drain []protocol.NodeID
		newNodes                        int
		reason                          string
	}
	cases := []struct {
		name string
		cfg  PlanConfig
		st   PlanStatus
		want want
	}{
		{
			name: "documented: average under the minimum cancels launching nodes",
			cfg:  limits(1, 3),
			st: PlanStatus{RunningNodes: []PlanNode{node("r", Running, 23.84, 0)},
				LaunchingNodes: []PlanNode{node("a", Launching, 0, 0), node("b", Launching, 0, 0)}},
			want: want{cancel: []protocol.NodeID{"b", "a"},
				reason: "The cluster average load (7.95%) is below its limits [30.00%, 70.00%] and the lower limit of Media Nodes (1) has not been reached. Current number of active nodes is 3 (2 launching and 1 running). 2 launching Media Nodes will be canceled."},
		},
		{
			name: "documented: average over the maximum launches a node",
			cfg:  limits(1, 8),
			st:   PlanStatus{RunningNodes: []PlanNode{node("r", Running, 73.18, 0)}},
			want: want{newNodes: 1,
				reason: "The cluster average load (73.18%) is above its limits [30.00%, 70.00%] and the upper limit of Media Nodes (8) has not been reached. Current number of active nodes is 1 (0 launching and 1 running). 1 new Media Nodes will be launched."},
		},
		{
			name: "documented: two nodes, little load, one terminated",
			cfg:  limits(1, 3),
			st:   PlanStatus{RunningNodes: []PlanNode{node("x", Running, 20.59, 0), node("y", Running, 16, 0)}},
			want: want{drain: []protocol.NodeID{"y"},
				reason: "The cluster average load (18.30%) is below its limits [30.00%, 70.00%] and the lower limit of Media Nodes (1) has not been reached. Current number of active nodes is 2 (0 launching and 2 running). 1 Media Nodes will be terminated."},
		},
		{
			name: "empty cluster reaches the minimum",
			cfg:  PlanConfig{MinNodes: 1, MaxNodes: 2, MinAvgLoad: 20, MaxAvgLoad: 70},
			st:   PlanStatus{},
			want: want{newNodes: 1,
				reason: "Minimum number of nodes (1) not reached. The cluster average load (0.00%) is below its limits [20.00%, 70.00%] but the lower limit of Media Nodes (1) has already been reached. Current number of active nodes is 0 (0 launching and 0 running). 1 new Media Nodes will be launched."},
		},
		{
			name: "scale out revives waiting nodes (most loaded first), then canceled ones (oldest first), then launches",
			cfg:  limits(1, 10),
			st: PlanStatus{
				RunningNodes:                []PlanNode{node("r1", Running, 95, 1), node("r2", Running, 95, 2)},
				WaitingIdleToTerminateNodes: []PlanNode{node("w1", WaitingIdle, 10, 3), node("w2", WaitingIdle, 30, 4)},
				CanceledNodes:               []PlanNode{node("c2", Canceled, 0, 6), node("c1", Canceled, 0, 5)},
			},
			// total 230, target ceil(230/50) = 5: three more than the two running.
			want: want{revive: []protocol.NodeID{"w2", "w1"}, uncancel: []protocol.NodeID{"c1"},
				reason: "The cluster average load (115.00%) is above its limits [30.00%, 70.00%] and the upper limit of Media Nodes (10) has not been reached. Current number of active nodes is 2 (0 launching and 2 running). 2 waiting-idle-to-terminate Media Nodes will be returned to running status. 1 canceled Media Nodes will be returned to launching status."},
		},
		{
			name: "scale out past the reusable nodes launches new ones",
			cfg:  limits(1, 10),
			st:   PlanStatus{RunningNodes: []PlanNode{node("r1", Running, 100, 1), node("r2", Running, 100, 2)}, CanceledNodes: []PlanNode{node("c", Canceled, 0, 3)}},
			want: want{uncancel: []protocol.NodeID{"c"}, newNodes: 1,
				reason: "The cluster average load (100.00%) is above its limits [30.00%, 70.00%] and the upper limit of Media Nodes (10) has not been reached. Current number of active nodes is 2 (0 launching and 2 running). 1 canceled Media Nodes will be returned to launching status. 1 new Media Nodes will be launched."},
		},
		{
			name: "scale out stops at the maximum",
			cfg:  limits(1, 3),
			st:   PlanStatus{RunningNodes: []PlanNode{node("r1", Running, 100, 1), node("r2", Running, 100, 2)}},
			want: want{newNodes: 1,
				reason: "The cluster average load (100.00%) is above its limits [30.00%, 70.00%] and the upper limit of Media Nodes (3) has not been reached. Current number of active nodes is 2 (0 launching and 2 running). 1 new Media Nodes will be launched."},
		},
		{
			name: "at the maximum an overloaded cluster does nothing",
			cfg:  limits(1, 2),
			st:   PlanStatus{RunningNodes: []PlanNode{node("r1", Running, 90, 1), node("r2", Running, 90, 2)}},
			want: want{reason: "The cluster average load (90.00%) is above its limits [30.00%, 70.00%] but the upper limit of Media Nodes (2) has already been reached. Current number of active nodes is 2 (0 launching and 2 running)."},
		},
		{
			name: "within the range nothing happens",
			cfg:  limits(1, 4),
			st:   PlanStatus{RunningNodes: []PlanNode{node("r1", Running, 50, 1), node("r2", Running, 40, 2)}},
			want: want{reason: "The cluster average load is within the range [30.00%, 70.00%]. Current number of active nodes is 2 (0 launching and 2 running)."},
		},
		{
			name: "hysteresis: no scale in that would leave the rest above the middle",
			cfg:  limits(1, 4),
			st:   PlanStatus{RunningNodes: []PlanNode{node("r1", Running, 29, 1), node("r2", Running, 27, 2)}},
			want: want{reason: "The cluster average load (28.00%) is below its limits [30.00%, 70.00%] and the lower limit of Media Nodes (1) has not been reached. Current number of active nodes is 2 (0 launching and 2 running)."},
		},
		{
			name: "over the maximum count: cancel the newest launch, then drain the least loaded",
			cfg:  limits(1, 2),
			st: PlanStatus{
				RunningNodes:   []PlanNode{node("r1", Running, 50, 1), node("r2", Running, 40, 2), node("r3", Running, 45, 3)},
				LaunchingNodes: []PlanNode{node("l1", Launching, 0, 4), node("l2", Launching, 0, 5)},
			},
			want: want{cancel: []protocol.NodeID{"l2", "l1"}, drain: []protocol.NodeID{"r2"},
				reason: "Maximum number of nodes (2) exceeded. The cluster average load (27.00%) is below its limits [30.00%, 70.00%] and the lower limit of Media Nodes (1) has not been reached. Current number of active nodes is 5 (2 launching and 3 running). 2 launching Media Nodes will be canceled. 1 Media Nodes will be terminated."},
		},
		{
			name: "waiting nodes' load counts, but they are never terminated again",
			cfg:  limits(1, 4),
			st: PlanStatus{RunningNodes: []PlanNode{node("r1", Running, 10, 1), node("r2", Running, 5, 2)},
				WaitingIdleToTerminateNodes: []PlanNode{node("w", WaitingIdle, 10, 0)}},
			want: want{drain: []protocol.NodeID{"r2"},
				reason: "The cluster average load (12.50%) is below its limits [30.00%, 70.00%] and the lower limit of Media Nodes (1) has not been reached. Current number of active nodes is 2 (0 launching and 2 running). 1 Media Nodes will be terminated."},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Plan(tc.cfg, tc.st)
			got := want{revive: ids(d.Revive), uncancel: ids(d.Uncancel), cancel: ids(d.Cancel), drain: ids(d.Drain),
				newNodes: d.NewNodes, reason: d.Reason}
			w := tc.want
			for _, l := range []*[]protocol.NodeID{&w.revive, &w.uncancel, &w.cancel, &w.drain} {
				if *l == nil {
					*l = []protocol.NodeID{}
				}
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
		})
	}
}

// TestPlanEventDocumentedExample feeds the system object of the autoscaling
// event documented in OpenVidu's CDR page to PlanEvent: the event must come
// out as documented (ids, order, nulls, counts), but for timestamp and
// clusterId, which come from the running system.
func TestPlanEventDocumentedExample(t *testing.T) {
	raw, err := os.ReadFile("testdata/autoscaling-doc-example.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	want := doc["autoscaling"]
	input, _ := json.Marshal(want["system"])
	out, err := PlanEvent(input, want["clusterId"].(string), int64(want["timestamp"].(float64)))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !reflect.DeepEqual(got["autoscaling"], want) {
		g, _ := json.MarshalIndent(got["autoscaling"], "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("got\n%s\nwant\n%s", g, w)
	}
}

func TestPlanEventRejectsBadInput(t *testing.T) {
	for _, in := range []string{
		``,
		`{"config": {"maxNodes": 1, "minNodes": 2, "maxAvgLoad": 70, "minAvgLoad": 30}, "status": {}}`,
		`{"config": {"maxNodes": 2, "minNodes": 1, "maxAvgLoad": 30, "minAvgLoad": 70}, "status": {}}`,
		`{"config": {"maxNodes": 2, "minNodes": 1, "maxAvgLoad": 70, "minAvgLoad": 30}, "status": {}, "extra": 1}`,
		`{"config": {"maxNodes": "two"}}`,
	} {
		if _, err := PlanEvent([]byte(in), "c", 0); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	out, err := PlanEvent([]byte(`{"config": {"maxNodes": 2, "minNodes": 1, "maxAvgLoad": 70, "minAvgLoad": 30},
		"status": {"runningNodes": [{"id": "m", "load": 50, "status": "running"}]}}`), "c", 0)
	if err != nil || out != nil {
		t.Errorf("a cluster within its limits: %s %v", out, err)
	}
}

func FuzzPlanEvent(f *testing.F) {
	raw, _ := os.ReadFile("testdata/autoscaling-doc-example.json")
	var doc map[string]map[string]any
	_ = json.Unmarshal(raw, &doc)
	seed, _ := json.Marshal(doc["autoscaling"]["system"])
	f.Add(seed)
	f.Add([]byte(`{"config": {"maxNodes": 3, "minNodes": 0, "maxAvgLoad": 70, "minAvgLoad": 0}, "status": {}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := PlanEvent(in, "c", 0)
		if err == nil && out != nil && !json.Valid(out) {
			t.Fatalf("invalid JSON out: %s", out)
		}
	})
}
