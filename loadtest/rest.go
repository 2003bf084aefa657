package loadtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// RESTConfig is a REST API throughput run: Concurrency workers, each
// repeating create session, create connection, close session (OpenVidu's
// POST /sessions, POST /sessions/{id}/connection, DELETE /sessions/{id})
// for Duration.
type RESTConfig struct {
	URL, Secret string
	Concurrency int
	Duration    time.Duration
}

// RESTResult is what a REST run measured.
type RESTResult struct {
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration_s"`
	// Cycles is how many create-session + create-connection + close cycles
	// completed; CyclesPerSecond their rate (each is three calls).
	Cycles          int     `json:"cycles"`
	CyclesPerSecond float64 `json:"cycles_per_second"`
	CallsPerSecond  float64 `json:"calls_per_second"`
	// Latencies of each call, in milliseconds.
	CreateSessionMS    Percentiles `json:"create_session_ms"`
	CreateConnectionMS Percentiles `json:"create_connection_ms"`
	CloseSessionMS     Percentiles `json:"close_session_ms"`
	Errors             int         `json:"errors"`
	ErrorSamples       []string    `json:"error_samples,omitempty"`
}

// RunREST runs the REST throughput test.
func RunREST(ctx context.Context, cfg RESTConfig) (*RESTResult, error) {
	if cfg.Concurrency < 1 || cfg.Duration <= 0 || cfg.Secret == "" {
		return nil, fmt.Errorf("rest load test: need concurrency >= 1, a positive duration and a secret")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency}}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("OPENVIDUAPP:"+cfg.Secret))
	call := func(ctx context.Context, method, path, body string, want int) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, method, cfg.URL+path, bytes.NewBufferString(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return 0, fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return time.Since(start), nil
	}
	var (
		mu                   sync.Mutex
		create, conn, closes []float64
		errs                 int
		samples              []string
	)
	record := func(dst *[]float64, d time.Duration, err error) bool {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs++
			if len(samples) < maxErrorSamples {
				samples = append(samples, err.Error())
			}
			return false
		}
		*dst = append(*dst, float64(d.Microseconds())/1000)
		return true
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A cycle started before the deadline runs to its end (the
			// caller's ctx still stops it): a create cut off at the
			// deadline could have made a session that nobody closes.
			for i := 0; runCtx.Err() == nil; i++ {
				sid := fmt.Sprintf("rest_%d_%d_%d", start.UnixNano()%1e6, w, i)
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				d, err := call(cctx, "POST", "/openvidu/api/sessions", `{"customSessionId":"`+sid+`"}`, http.StatusOK)
				if record(&create, d, err) {
					d, err = call(cctx, "POST", "/openvidu/api/sessions/"+sid+"/connection", `{}`, http.StatusOK)
					record(&conn, d, err)
					d, err = call(cctx, "DELETE", "/openvidu/api/sessions/"+sid, "", http.StatusNoContent)
					record(&closes, d, err)
				} else {
					// The session may exist (the answer was lost): close it.
					_, _ = call(cctx, "DELETE", "/openvidu/api/sessions/"+sid, "", http.StatusNoContent)
				}
				ccancel()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	res := &RESTResult{Concurrency: cfg.Concurrency, DurationS: wall, Cycles: len(closes),
		CreateSessionMS: percentiles(create), CreateConnectionMS: percentiles(conn), CloseSessionMS: percentiles(closes),
		Errors: errs, ErrorSamples: samples}
	if wall > 0 {
		res.CyclesPerSecond = float64(len(closes)) / wall
		res.CallsPerSecond = float64(len(create)+len(conn)+len(closes)) / wall
	}
	return res, nil
}
