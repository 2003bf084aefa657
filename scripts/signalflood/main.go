// Command signalflood measures what one participant flooding another with
// signals costs a Chorus cluster started by `chorus dev --state-file F`: one
// participant sends -n signals of -size bytes of data to another that
// joined and then never reads its WebSocket (a slow or hostile client),
// from -workers concurrent calls. It reports how many signals were
// accepted and refused, Redis's used_memory (sampled every 20 ms: its
// growth at the peak and at the end), the CPU time the masters and Redis
// spent (utime+stime from /proc, in seconds), and whether the slow reader
// is still a participant of the session.
//
//	chorus dev --state-file /tmp/dev.json --masters 1 --media-nodes 1 --turn-servers 0 &
//	go run ./scripts/signalflood -state /tmp/dev.json -n 600 -size 64000
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
)

// state is the part of chorus dev's state file this command reads.
type state struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
	Redis  string `json:"redis"`
	Nodes  []struct {
		Role string `json:"role"`
		PID  int    `json:"pid"`
	} `json:"nodes"`
}

func main() {
	statePath := flag.String("state", "", "chorus dev's --state-file")
	n := flag.Int("n", 600, "signals to send")
	size := flag.Int("size", 64000, "bytes of data per signal")
	workers := flag.Int("workers", 4, "concurrent sendMessage calls")
	redisPID := flag.Int("redis-pid", 0, "pid of redis-server, to count its CPU time (0: not counted)")
	flag.Parse()
	if err := run(*statePath, *n, *size, *workers, *redisPID); err != nil {
		fmt.Fprintln(os.Stderr, "signalflood:", err)
		os.Exit(1)
	}
}

func run(statePath string, n, size, workers, redisPID int) error {
	raw, err := os.ReadFile(statePath)
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var masters []int
	for _, node := range st.Nodes {
		if node.Role == "master" {
			masters = append(masters, node.PID)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: st.Redis})
	defer rdb.Close()

	sid := fmt.Sprintf("flood%d", time.Now().UnixNano()%1e6)
	if _, err := rest(ctx, st, "POST", "/openvidu/api/sessions", fmt.Sprintf(`{"customSessionId":%q}`, sid)); err != nil {
		return err
	}
	defer func() { _, _ = rest(context.WithoutCancel(ctx), st, "DELETE", "/openvidu/api/sessions/"+sid, "") }()
	reader, readerID, err := join(ctx, st, sid)
	if err != nil {
		return fmt.Errorf("slow reader: %w", err)
	}
	defer func() { _ = reader.CloseNow() }()
	sender, _, err := join(ctx, st, sid)
	if err != nil {
		return fmt.Errorf("sender: %w", err)
	}
	defer func() { _ = sender.CloseNow() }()
	// From here the reader's socket is never read again.

	base, err := usedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	var peak atomic.Int64
	peak.Store(base)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-t.C:
			}
			if m, err := usedMemory(sampleCtx, rdb); err == nil && m > peak.Load() {
				peak.Store(m)
			}
		}
	}()
	cpu0 := cpuSeconds(append(masters, redisPID)...)
	start := time.Now()

	calls := newCaller(sender)
	go calls.read(ctx)
	var accepted, refused atomic.Int64
	errorsSeen := sync.Map{}
	data := strings.Repeat("x", size)
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				msg, _ := json.Marshal(map[string]any{"to": []string{readerID}, "type": "signal:flood", "data": data})
				resp, err := calls.call(ctx, "sendMessage", map[string]string{"message": string(msg)})
				switch {
				case err != nil:
					refused.Add(1)
					errorsSeen.Store(err.Error(), true)
					if errors.Is(err, errSocketClosed) {
						return
					}
				case resp.Error != nil:
					refused.Add(1)
					errorsSeen.Store(fmt.Sprintf("%d %s", resp.Error.Code, resp.Error.Message), true)
				default:
					accepted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	time.Sleep(time.Second) // what the masters do after the last answer (deliveries)
	cpu := cpuSeconds(append(masters, redisPID)...) - cpu0
	stopSampling()
	<-sampled
	end, err := usedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	body, err := rest(ctx, st, "GET", "/openvidu/api/sessions/"+sid, "")
	if err != nil {
		return err
	}
	var sess struct {
		Connections struct {
			Content []struct {
				ConnectionID string `json:"connectionId"`
				Status       string `json:"status"`
			} `json:"content"`
		} `json:"connections"`
	}
	_ = json.Unmarshal(body, &sess)
	readerStatus := "gone"
	for _, c := range sess.Connections.Content {
		if c.ConnectionID == readerID {
			readerStatus = c.Status
		}
	}
	var seen []string
	errorsSeen.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
	fmt.Printf("signals: %d sent in %s, %d accepted, %d refused %v\n", n, took.Round(time.Millisecond), accepted.Load(), refused.Load(), seen)
	fmt.Printf("redis used_memory: +%.1f MB at the peak, +%.1f MB at the end (base %.1f MB)\n",
		float64(peak.Load()-base)/1e6, float64(end-base)/1e6, float64(base)/1e6)
	fmt.Printf("cpu: %.2f s (masters %v, redis %d), %.2f ms per signal sent\n", cpu, masters, redisPID, cpu*1000/float64(n))
	fmt.Printf("slow reader %s: %s\n", readerID, readerStatus)
	return nil
}

// rest calls the REST API with the secret; non-2xx answers are errors.
func rest(ctx context.Context, st state, method, path, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, st.URL+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("OPENVIDUAPP", st.Secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out, nil
}

// join creates a connection and joins it over a bare WebSocket; it returns
// the socket (nothing read after joinRoom's answer) and the connection id.
func join(ctx context.Context, st state, sid string) (*websocket.Conn, string, error) {
	body, err := rest(ctx, st, "POST", "/openvidu/api/sessions/"+sid+"/connection", `{}`)
	if err != nil {
		return nil, "", err
	}
	var conn struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &conn); err != nil {
		return nil, "", err
	}
	u, err := url.Parse(st.URL)
	if err != nil {
		return nil, "", err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	ws, resp, err := websocket.Dial(ctx, u.String()+"/openvidu?sessionId="+sid, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, "", err
	}
	ws.SetReadLimit(16 << 20)
	params, _ := json.Marshal(map[string]string{"token": conn.Token, "session": sid, "platform": "signalflood", "metadata": ""})
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 0, "method": "joinRoom", "params": json.RawMessage(params)})
	if err := ws.Write(ctx, websocket.MessageText, req); err != nil {
		return nil, "", err
	}
	for {
		_, frame, err := ws.Read(ctx)
		if err != nil {
			return nil, "", err
		}
		var resp response
		if json.Unmarshal(frame, &resp) != nil || resp.Method != "" {
			continue
		}
		if resp.Error != nil {
			return nil, "", fmt.Errorf("joinRoom: %d %s", resp.Error.Code, resp.Error.Message)
		}
		var res struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(resp.Result, &res)
		return ws, res.ID, nil
	}
}

type response struct {
	ID     *int64          `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var errSocketClosed = errors.New("socket closed")

// caller runs JSON-RPC calls on a socket whose reads one goroutine owns.
type caller struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	nextID  int64
	waiting map[int64]chan response
	closed  chan struct{}
}

func newCaller(ws *websocket.Conn) *caller {
	return &caller{ws: ws, nextID: 1, waiting: map[int64]chan response{}, closed: make(chan struct{})}
}

func (c *caller) read(ctx context.Context) {
	defer close(c.closed)
	for {
		_, frame, err := c.ws.Read(ctx)
		if err != nil {
			return
		}
		var resp response
		if json.Unmarshal(frame, &resp) != nil || resp.ID == nil || resp.Method != "" {
			continue
		}
		c.mu.Lock()
		ch := c.waiting[*resp.ID]
		delete(c.waiting, *resp.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

func (c *caller) call(ctx context.Context, method string, params any) (response, error) {
	c.mu.Lock()
	id := c.nextID
	c.nextID++
	ch := make(chan response, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	raw, _ := json.Marshal(params)
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": json.RawMessage(raw)})
	if err := c.ws.Write(ctx, websocket.MessageText, req); err != nil {
		return response{}, fmt.Errorf("%w: %w", errSocketClosed, err)
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-c.closed:
		return response{}, errSocketClosed
	case <-ctx.Done():
		return response{}, ctx.Err()
	}
}

// usedMemory is Redis's used_memory, in bytes.
func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO memory")
}

// cpuSeconds sums utime+stime of the processes (0 pids are skipped), in
// seconds (USER_HZ 100, Linux's value on every architecture Go supports).
func cpuSeconds(pids ...int) float64 {
	var ticks int64
	for _, pid := range pids {
		if pid == 0 {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces) start past ')'.
		s := string(raw)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(fields[11], 10, 64)
		k, _ := strconv.ParseInt(fields[12], 10, 64)
		ticks += u + k
	}
	return float64(ticks) / 100
}
