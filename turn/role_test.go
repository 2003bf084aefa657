package turn

import (
	"errors"
	"strings"
	"testing"

	"github.com/chorus-rtc/chorus/shared/config"
)

// TestNewRoleRefusesUnsafeSecrets: a TURN role embedded in another program
// is held to the rules `chorus turn` validates: listening beyond loopback,
// it refuses the development TURN secret and short ones before binding
// anything.
func TestNewRoleRefusesUnsafeSecrets(t *testing.T) {
	tests := []struct {
		name     string
		listenIP string
		secret   string
		want     string
	}{
		{"development secret on every interface", "0.0.0.0", config.DevTurnSecret, "development value"},
		{"short secret on every interface", "0.0.0.0", "abc123", "too short"},
		{"empty secret on loopback", "127.0.0.1", "", "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &config.Config{}
			c.Turn.ListenIP, c.Turn.Port, c.Turn.Secret = tt.listenIP, 0, tt.secret
			c.Turn.RelayIP, c.Turn.TLS.Mode = "127.0.0.1", "off"
			r, err := NewRole(RoleConfig{Cluster: c})
			if err == nil {
				r.server.stopAccepting()
				r.server.closeListeners()
				t.Fatal("accepted")
			}
			if !errors.Is(err, config.ErrUnsafeSecrets) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want config.ErrUnsafeSecrets saying %q", err, tt.want)
			}
		})
	}
}
