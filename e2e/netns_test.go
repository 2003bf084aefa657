//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netNSConfig is the firewall of a test network namespace: nftables rules
// inside the namespace, on the traffic between it and the root namespace
// (its loopback is never filtered).
type netNSConfig struct {
	// DropUDP drops UDP both ways (outbound by destination port, inbound by
	// source port) except with the ports of AllowUDPPorts: a network that
	// blocks UDP (AllowUDPPorts empty), or lets it through only to a TURN
	// server's port.
	DropUDP       bool
	AllowUDPPorts []int
	// AllowTCPPorts, when not empty, restricts outbound TCP connections to
	// these destination ports (include the proxy's: the page and its
	// WebSocket come from there), e.g. a TURN server's TCP or TLS port.
	AllowTCPPorts []int
	// UDPLossPercent drops that share of the namespace's outbound UDP
	// packets at random (nftables' numgen random, packet by packet: the
	// loss tc netem would add, which this machine's kernel lacks): a lossy
	// uplink for media, while TCP (the page, its WebSocket) is spared. The
	// packets are dropped on the veth's egress hook, past the sockets: a
	// drop in the output hook would fail the sender's sendmsg with EPERM,
	// which a browser notices and works around, unlike a lost packet.
	UDPLossPercent int
}

// netNS is a network namespace joined to the root namespace by a veth
// pair on a /30 of its own: HostIP is the root side, NSIP the namespace's.
// The namespace has no other route: what runs inside reaches the root
// side's address and nothing else. Everything is removed when the test
// ends, whatever its outcome.
type netNS struct {
	Name         string
	HostIP, NSIP netip.Addr
	hostIf, nsIf string
	t            *testing.T
}

// netnsBase is the /16 the test namespaces take their /30s from.
const netnsBase = "10.213"

// newNetNS creates a namespace with cfg's firewall. It fails the test when
// ip or nft are missing (make deps installs them) or the test is not root.
func newNetNS(t *testing.T, cfg netNSConfig) *netNS {
	t.Helper()
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (make deps installs iproute2 and nftables): %v", tool, err)
		}
	}
	if syscall.Geteuid() != 0 {
		t.Fatal("network namespaces need root")
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	id := hex.EncodeToString(suffix)
	n := &netNS{Name: "chorus-e2e-" + id, hostIf: "cvh" + id, nsIf: "cvn" + id, t: t}
	subnet, err := freeSubnet()
	if err != nil {
		t.Fatal(err)
	}
	n.HostIP, n.NSIP = subnet.Next(), subnet.Next().Next()
	t.Cleanup(n.remove) // registered first: it runs after the cleanups of whatever runs inside

	n.ip("netns", "add", n.Name)
	n.ip("link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.Name)
	n.ip("addr", "add", n.HostIP.String()+"/30", "dev", n.hostIf)
	n.ip("link", "set", n.hostIf, "up")
	n.ip("-n", n.Name, "link", "set", "lo", "up")
	n.ip("-n", n.Name, "addr", "add", n.NSIP.String()+"/30", "dev", n.nsIf)
	n.ip("-n", n.Name, "link", "set", n.nsIf, "up")
	n.SetFirewall(cfg)
	n.waitReachable()
	return n
}

// freeSubnet picks a 10.213.x.0/30 that no interface of the root namespace
// is on (another test's namespace, say).
func freeSubnet() (netip.Addr, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ip addr show: %w", err)
	}
	for range 64 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		third, fourth := int(b[0]), int(b[1])&^3
		prefix := fmt.Sprintf("%s.%d.", netnsBase, third)
		if strings.Contains(string(out), " "+prefix) {
			continue // keep the whole /24 to one namespace: simpler to read in ip addr
		}
		return netip.MustParseAddr(prefix + strconv.Itoa(fourth)), nil
	}
	return netip.Addr{}, fmt.Errorf("no free /30 in %s.0.0/16", netnsBase)
}

func (n *netNS) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// rules renders cfg as an nftables table.
func (cfg netNSConfig) rules() string {
	set := func(ports []int) string {
		s := make([]string, len(ports))
		for i, p := range ports {
			s[i] = strconv.Itoa(p)
		}
		return "{ " + strings.Join(s, ", ") + " }"
	}
	var out, in []string
	if len(cfg.AllowTCPPorts) > 0 {
		out = append(out, "meta l4proto tcp tcp dport "+set(cfg.AllowTCPPorts)+" accept",
			"meta l4proto tcp ct state new drop")
	}
	if cfg.DropUDP {
		if len(cfg.AllowUDPPorts) > 0 {
			out = append(out, "udp dport "+set(cfg.AllowUDPPorts)+" accept")
			in = append(in, "udp sport "+set(cfg.AllowUDPPorts)+" accept")
		}
		out = append(out, "meta l4proto udp counter drop")
		in = append(in, "meta l4proto udp counter drop")
	}
	chain := func(name, hook, iface string, rules []string) string {
		body := "\t\ttype filter hook " + hook + " priority filter; policy accept;\n\t\t" + iface + " \"lo\" accept\n"
		for _, r := range rules {
			body += "\t\t" + r + "\n"
		}
		return "\tchain " + name + " {\n" + body + "\t}\n"
	}
	return "table inet chorus_e2e {\n" + chain("output", "output", "oifname", out) + chain("input", "input", "iifname", in) + "}\n"
}

// SetFirewall replaces the namespace's firewall by cfg's, atomically (one
// nft transaction: the table is declared, deleted and made again).
func (n *netNS) SetFirewall(cfg netNSConfig) {
	n.t.Helper()
	rules := "table inet chorus_e2e {}\ndelete table inet chorus_e2e\n" + cfg.rules() +
		"table netdev chorus_e2e_loss {}\ndelete table netdev chorus_e2e_loss\n"
	if cfg.UDPLossPercent > 0 {
		rules += "table netdev chorus_e2e_loss {\n\tchain egress {\n\t\ttype filter hook egress device \"" + n.nsIf + "\" priority filter; policy accept;\n" +
			fmt.Sprintf("\t\tmeta l4proto udp numgen random mod 100 < %d counter drop\n", cfg.UDPLossPercent) + "\t}\n}\n"
	}
	cmd := exec.Command("ip", "netns", "exec", n.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nft in %s: %v\n%s\nrules:\n%s", n.Name, err, out, rules)
	}
}

// LimitDownlink caps what the root side sends into the namespace to kbit
// kbit/s (tc tbf on the root side of the veth, queueing at most 200 ms);
// 0 lifts the cap.
func (n *netNS) LimitDownlink(kbit int) {
	n.t.Helper()
	_ = exec.Command("tc", "qdisc", "del", "dev", n.hostIf, "root").Run() // none yet: fine
	if kbit == 0 {
		return
	}
	args := []string{"qdisc", "add", "dev", n.hostIf, "root", "tbf", "rate", fmt.Sprintf("%dkbit", kbit), "burst", "16kbit", "latency", "200ms"}
	if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("tc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// LimitUplink caps what the namespace sends out to kbit kbit/s (tc tbf on
// the namespace's side of the veth, queueing at most 200 ms); 0 lifts the
// cap. The qdisc goes with the namespace.
func (n *netNS) LimitUplink(kbit int) {
	n.t.Helper()
	_ = exec.Command("ip", "netns", "exec", n.Name, "tc", "qdisc", "del", "dev", n.nsIf, "root").Run() // none yet: fine
	if kbit == 0 {
		return
	}
	args := []string{"netns", "exec", n.Name, "tc", "qdisc", "add", "dev", n.nsIf, "root", "tbf", "rate", fmt.Sprintf("%dkbit", kbit), "burst", "16kbit", "latency", "200ms"}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Ruleset is the namespace's nftables ruleset, with its counters.
func (n *netNS) Ruleset() string {
	out, err := exec.Command("ip", "netns", "exec", n.Name, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("nft list ruleset: %v\n%s", err, out)
	}
	return string(out)
}

// DroppedUDP is the number of UDP packets the firewall dropped, both ways.
func (n *netNS) DroppedUDP() int { return n.counted("meta l4proto udp counter") }

// DroppedAtRandom is the number of UDP packets UDPLossPercent dropped.
func (n *netNS) DroppedAtRandom() int { return n.counted("numgen random") }

// counted sums the packet counters of the rules whose text contains rule.
func (n *netNS) counted(rule string) int {
	total := 0
	for _, line := range strings.Split(n.Ruleset(), "\n") {
		if !strings.Contains(line, rule) {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "packets" {
				v, _ := strconv.Atoi(f[i+1])
				total += v
			}
		}
	}
	return total
}

// waitReachable waits until the namespace reaches the root side over the
// veth (the link takes a moment to come up).
func (n *netNS) waitReachable() {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "exec", n.Name, "ip", "-4", "route", "get", n.HostIP.String()).CombinedOutput()
		if err == nil && strings.Contains(string(out), "dev "+n.nsIf) && n.linkUp() {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("the namespace %s does not reach %s: %v %s", n.Name, n.HostIP, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *netNS) linkUp() bool {
	out, err := exec.Command("ip", "-n", n.Name, "-o", "link", "show", n.nsIf).Output()
	return err == nil && strings.Contains(string(out), "LOWER_UP")
}

// Command runs name inside the namespace (ip netns exec). The caller
// starts it and waits for it; whatever still runs inside when the test
// ends is killed.
func (n *netNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// pids lists the processes running inside the namespace.
func (n *netNS) pids() []int {
	out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// remove kills what still runs inside the namespace (only this test's
// processes can be there), deletes the namespace (which destroys the veth
// pair with it) and checks that nothing is left.
func (n *netNS) remove() {
	t := n.t
	for _, pid := range n.pids() {
		t.Errorf("process %d still ran in %s at the end of the test: killed", pid, n.Name)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(n.pids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("No such file")) {
		t.Errorf("ip netns del %s: %v %s", n.Name, err, out)
	}
	// The root side goes with its peer; wait for the kernel to finish.
	for time.Now().Before(deadline) {
		if exec.Command("ip", "link", "show", n.hostIf).Run() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if exec.Command("ip", "link", "show", n.hostIf).Run() == nil {
		t.Errorf("%s outlived its namespace: deleted", n.hostIf)
		_ = exec.Command("ip", "link", "del", n.hostIf).Run()
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(n.Name)) {
		t.Errorf("%s still listed by ip netns list:\n%s", n.Name, out)
	}
}

// TestNetNSFirewall checks the helper itself: from inside the namespace
// the root side's UDP and TCP listeners are reached with no firewall, and
// only the allowed ports once it is set; dropped packets are counted; the
// namespace and its veth pair are gone afterwards (remove checks it).
func TestNetNSFirewall(t *testing.T) {
	ns := newNetNS(t, netNSConfig{})
	udpOK, udpKO := listenUDP(t, ns.HostIP), listenUDP(t, ns.HostIP)
	tcpOK, tcpKO := listenTCP(t, ns.HostIP), listenTCP(t, ns.HostIP)
	expect := func(what string, udp map[*udpSink]bool, tcp map[*tcpSink]bool) {
		t.Helper()
		for sink, want := range udp {
			if got := ns.sendUDP(t, sink.port) && sink.received(2*time.Second); got != want {
				t.Errorf("%s: UDP to port %d arrived: %v, want %v\n%s", what, sink.port, got, want, ns.Ruleset())
			}
		}
		for sink, want := range tcp {
			if got := ns.connectTCP(t, sink.port) && sink.accepted(2*time.Second); got != want {
				t.Errorf("%s: TCP to port %d connected: %v, want %v\n%s", what, sink.port, got, want, ns.Ruleset())
			}
		}
	}
	expect("no firewall", map[*udpSink]bool{udpOK: true, udpKO: true}, map[*tcpSink]bool{tcpOK: true, tcpKO: true})

	ns.SetFirewall(netNSConfig{DropUDP: true, AllowUDPPorts: []int{udpOK.port}, AllowTCPPorts: []int{tcpOK.port}})
	expect("UDP and TCP to one port each", map[*udpSink]bool{udpOK: true, udpKO: false}, map[*tcpSink]bool{tcpOK: true, tcpKO: false})
	if ns.DroppedUDP() == 0 {
		t.Errorf("no dropped UDP packet counted:\n%s", ns.Ruleset())
	}

	ns.SetFirewall(netNSConfig{DropUDP: true})
	expect("no UDP", map[*udpSink]bool{udpOK: false, udpKO: false}, map[*tcpSink]bool{tcpOK: true, tcpKO: true})
}

// udpSink counts the datagrams a UDP socket of the root side receives.
type udpSink struct {
	port int
	got  chan struct{}
}

func listenUDP(t *testing.T, ip netip.Addr) *udpSink {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s := &udpSink{port: c.LocalAddr().(*net.UDPAddr).Port, got: make(chan struct{}, 16)}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				return
			}
			select {
			case s.got <- struct{}{}:
			default:
			}
		}
	}()
	return s
}

func (s *udpSink) received(within time.Duration) bool {
	select {
	case <-s.got:
		return true
	case <-time.After(within):
		return false
	}
}

// tcpSink counts the connections a TCP listener of the root side accepts.
type tcpSink struct {
	port int
	got  chan struct{}
}

func listenTCP(t *testing.T, ip netip.Addr) *tcpSink {
	t.Helper()
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	s := &tcpSink{port: l.Addr().(*net.TCPAddr).Port, got: make(chan struct{}, 16)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
			select {
			case s.got <- struct{}{}:
			default:
			}
		}
	}()
	return s
}

func (s *tcpSink) accepted(within time.Duration) bool {
	select {
	case <-s.got:
		return true
	case <-time.After(within):
		return false
	}
}

// sendUDP sends one datagram from inside the namespace to the root side's
// port (bash's /dev/udp); false if it could not even be sent.
func (n *netNS) sendUDP(t *testing.T, port int) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.Command(ctx, "bash", "-c", fmt.Sprintf("echo -n ping > /dev/udp/%s/%d", n.HostIP, port)).Run()
	return err == nil
}

// connectTCP opens a TCP connection from inside the namespace to the root
// side's port (bash's /dev/tcp), giving up after 2 s.
func (n *netNS) connectTCP(t *testing.T, port int) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.Command(ctx, "timeout", "2", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", n.HostIP, port)).Run()
	return err == nil
}
