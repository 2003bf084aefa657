// Command wsflood measures how many idle, unauthenticated WebSockets one
// client can hold open against a Chorus proxy, and for how long: it opens
// -n sockets to <url>/openvidu?sessionId=<session> (as fast as -rate per
// second allows), sends nothing on them, and reports every -every how many
// are still open, until all are closed or -for has passed.
//
//	go run ./scripts/wsflood -url ws://127.0.0.1:4443 -n 2000 -for 60s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

func main() {
	base := flag.String("url", "ws://127.0.0.1:4443", "the proxy's ws(s):// URL")
	session := flag.String("session", "flood", "sessionId of the WebSocket URL (it need not exist)")
	n := flag.Int("n", 2000, "sockets to open")
	rate := flag.Int("rate", 500, "sockets opened per second at most")
	hold := flag.Duration("for", 60*time.Second, "how long to watch the sockets")
	every := flag.Duration("every", 5*time.Second, "report interval")
	flag.Parse()
	if err := run(*base+"/openvidu?sessionId="+*session, *n, *rate, *hold, *every); err != nil {
		fmt.Fprintln(os.Stderr, "wsflood:", err)
		os.Exit(1)
	}
}

func run(url string, n, rate int, hold, every time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), hold+time.Minute)
	defer cancel()
	var open, refused atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []*websocket.Conn
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	for i := 0; i < n; i++ {
		<-tick.C
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			refused.Add(1)
			continue
		}
		open.Add(1)
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Reads until the server closes the socket; nothing is sent.
			for {
				if _, _, err := c.Read(ctx); err != nil {
					open.Add(-1)
					return
				}
			}
		}()
	}
	fmt.Printf("opened %d of %d sockets in %s (%d refused)\n", n-int(refused.Load()), n, time.Since(start).Round(time.Millisecond), refused.Load())
	report := time.NewTicker(every)
	defer report.Stop()
	deadline := time.After(hold)
watch:
	for {
		select {
		case <-report.C:
			o := open.Load()
			fmt.Printf("t=%s open=%d\n", time.Since(start).Round(time.Second), o)
			if o == 0 {
				break watch
			}
		case <-deadline:
			break watch
		}
	}
	fmt.Printf("after %s: %d still open\n", time.Since(start).Round(time.Second), open.Load())
	mu.Lock()
	for _, c := range conns {
		_ = c.CloseNow()
	}
	mu.Unlock()
	cancel()
	wg.Wait()
	return nil
}
