package participant

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// ErrClosed is returned by calls on a closed participant or socket.
var ErrClosed = errors.New("participant: connection closed")

// rpcConn is a JSON-RPC 2.0 client over one WebSocket, as openvidu-browser's
// kurento-jsonrpc client: requests with increasing ids, server notifications
// delivered to a callback in order.
type rpcConn struct {
	ws      *websocket.Conn
	onNotif func(method string, params json.RawMessage)
	// onLost is called once when the socket breaks without close() (the
	// server or the network dropped it).
	onLost func(*rpcConn)

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan rpcResult
	closed  bool
	closing bool
	done    chan struct{}
	err     error
}

type rpcResult struct {
	result json.RawMessage
	err    *protocol.RPCError
}

func dialRPC(ctx context.Context, url string, tlsConfig *tls.Config, onNotif func(string, json.RawMessage), onLost func(*rpcConn)) (*rpcConn, error) {
	var opts *websocket.DialOptions
	if tlsConfig != nil {
		opts = &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}}
	}
	ws, resp, err := websocket.Dial(ctx, url, opts)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close() // an error's first bytes, already read (nil on success)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(4 << 20)
	c := &rpcConn{ws: ws, onNotif: onNotif, onLost: onLost, pending: map[int64]chan rpcResult{}, done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

func (c *rpcConn) readLoop() {
	defer c.shutdown(ErrClosed)
	for {
		_, frame, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			byUs := c.closing
			c.mu.Unlock()
			c.shutdown(fmt.Errorf("%w: %w", ErrClosed, err))
			if !byUs && c.onLost != nil {
				c.onLost(c)
			}
			return
		}
		var msg struct {
			ID     *int64             `json:"id"`
			Method string             `json:"method"`
			Params json.RawMessage    `json:"params"`
			Result json.RawMessage    `json:"result"`
			Error  *protocol.RPCError `json:"error"`
		}
		if json.Unmarshal(frame, &msg) != nil {
			continue
		}
		if msg.Method != "" {
			c.onNotif(msg.Method, msg.Params)
			continue
		}
		if msg.ID == nil {
			continue
		}
		c.mu.Lock()
		ch := c.pending[*msg.ID]
		delete(c.pending, *msg.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- rpcResult{result: msg.Result, err: msg.Error}
		}
	}
}

func (c *rpcConn) shutdown(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed, c.err = true, err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	close(c.done)
}

// call sends a request and waits for its response; out receives the result.
func (c *rpcConn) call(ctx context.Context, method string, params any, out any) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	id := c.nextID
	c.nextID++
	ch := make(chan rpcResult, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	req := map[string]any{"jsonrpc": "2.0", "method": method, "id": id}
	if params != nil {
		req["params"] = params
	}
	frame, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s: %w", method, err)
	}
	if err := c.ws.Write(ctx, websocket.MessageText, frame); err != nil {
		c.forget(id)
		return fmt.Errorf("send %s: %w", method, err)
	}
	select {
	case <-ctx.Done():
		c.forget(id)
		return fmt.Errorf("%s: %w", method, ctx.Err())
	case res, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: %w", method, ErrClosed)
		}
		if res.err != nil {
			return res.err
		}
		if out != nil {
			if err := json.Unmarshal(res.result, out); err != nil {
				return fmt.Errorf("%s: decode result: %w", method, err)
			}
		}
		return nil
	}
}

func (c *rpcConn) forget(id int64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// pingLoop sends openvidu-browser's heartbeat every interval until the
// connection closes or ctx ends.
func (c *rpcConn) pingLoop(ctx context.Context, interval time.Duration) {
	first := true
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var params any
		if first {
			params, first = map[string]any{"interval": interval.Milliseconds()}, false
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		_ = c.call(pctx, "ping", params, nil)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
		}
	}
}

func (c *rpcConn) close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	_ = c.ws.Close(websocket.StatusCode(4102), "Connection closed by client")
	<-c.done
}
