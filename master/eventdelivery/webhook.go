package eventdelivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Webhook posts events to OpenVidu's webhook endpoint: POST, the event's JSON
// body, Content-Type application/json, the configured headers, and
// X-Chorus-Event-Id (the body's eventId). A delivery is retried with
// exponential backoff and full jitter until it succeeds (any 2xx) or its
// deadline passes.
type Webhook struct {
	endpoint string
	headers  http.Header
	events   map[string]bool
	deadline time.Duration
	client   *retryablehttp.Client
}

// NewWebhook builds the sender from a validated configuration. onRetry, if
// not nil, is told of each POST repeated after a failed attempt.
func NewWebhook(cfg config.Webhook, onRetry func()) *Webhook {
	w := &Webhook{endpoint: cfg.Endpoint, headers: http.Header{}, events: map[string]bool{}, deadline: cfg.Deadline}
	for _, h := range cfg.Headers {
		if name, value, ok := strings.Cut(h, ": "); ok {
			w.headers.Set(strings.TrimSpace(name), value)
		}
	}
	w.headers.Set("Content-Type", "application/json")
	for _, e := range cfg.Events {
		w.events[e] = true
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Timeout: cfg.AttemptTimeout}
	c.Logger = nil
	c.RetryWaitMin, c.RetryWaitMax = cfg.RetryWaitMin, cfg.RetryWaitMax
	c.RetryMax = math.MaxInt32 // the deadline, not a count, ends the retries
	c.Backoff = fullJitter
	c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return err != nil || resp.StatusCode < 200 || resp.StatusCode > 299, nil
	}
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	if onRetry != nil {
		c.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, attempt int) {
			if attempt > 0 {
				onRetry()
			}
		}
	}
	w.client = c
	return w
}

// fullJitter waits a random time between min and min*2^attempt, capped at max.
func fullJitter(min, max time.Duration, attempt int, _ *http.Response) time.Duration {
	ceiling := float64(min) * math.Pow(2, float64(attempt))
	if ceiling > float64(max) || math.IsInf(ceiling, 0) {
		ceiling = float64(max)
	}
	return min + time.Duration(rand.Float64()*(ceiling-float64(min)))
}

// Wants reports whether the event is one the webhook receives
// (OPENVIDU_WEBHOOK_EVENTS).
func (w *Webhook) Wants(name string) bool { return w.events[name] }

// Deliver posts one event, retrying until it is accepted or the deadline
// passes; it returns the last failure then. It stops early when ctx ends.
func (w *Webhook) Deliver(ctx context.Context, e store.StoredEvent) error {
	ctx, cancel := context.WithTimeout(ctx, w.deadline)
	defer cancel()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, w.endpoint, bytes.NewReader(e.Body))
	if err != nil {
		return fmt.Errorf("build webhook request: %w", err)
	}
	for name, values := range w.headers {
		req.Header[name] = values
	}
	req.Header.Set("X-Chorus-Event-Id", e.ID)
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("not delivered within %s: %w", w.deadline, err)
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %d until the deadline", resp.StatusCode)
	}
	return nil
}
