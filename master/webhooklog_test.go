package master

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/store"
)

// TestWebhookEndpointNotLogged: the start-up line announcing the webhook
// names its host, never the credentials its URL may hold (user info, a
// token in the path or the query).
func TestWebhookEndpointNotLogged(t *testing.T) {
	var logs bytes.Buffer
	m := &Master{
		cluster: &config.Config{Webhook: config.Webhook{Enabled: true,
			Endpoint: "https://user:PASSWORD_IN_URL@hooks.example.com:8443/hook/TOKEN_IN_PATH?key=TOKEN_IN_QUERY"}},
		log:   slog.New(slog.NewTextHandler(&logs, nil)),
		store: store.New(store.Config{ClusterID: "t"}),
	}
	_, closeSinks, err := m.eventDispatcher()
	if err != nil {
		t.Fatal(err)
	}
	closeSinks()
	out := logs.String()
	if !strings.Contains(out, "https://hooks.example.com:8443") {
		t.Errorf("the log does not say where events go: %s", out)
	}
	for _, secret := range []string{"PASSWORD_IN_URL", "TOKEN_IN_PATH", "TOKEN_IN_QUERY", "user:"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows %s: %s", secret, out)
		}
	}
}
