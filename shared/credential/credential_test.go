package credential

import (
	"strings"
	"testing"
	"time"
)

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		secret, got string
		want        bool
	}{
		{"s3cret_0123456789", "s3cret_0123456789", true},
		{"s3cret_0123456789", "s3cret_012345678", false},
		{"s3cret_0123456789", "s3cret_01234567890", false},
		{"s3cret_0123456789", "S3cret_0123456789", false},
		{"s3cret_0123456789", "", false},
		{"", "", false},
		{"", "anything", false},
	} {
		if got := New(tc.secret).Matches(tc.got); got != tc.want {
			t.Errorf("New(%q).Matches(%q) = %v, want %v", tc.secret, tc.got, got, tc.want)
		}
	}
	var zero Secret
	if zero.Matches("") {
		t.Error("the zero Secret matches the empty string")
	}
}

// TestMatchesTimeIgnoresTheSecretsLength: checking one guess takes as long
// whether the secret has the guess's length or another one. A comparison
// that returns early on a length mismatch (subtle.ConstantTimeCompare on the
// secrets) is thousands of times faster for the secret of another length,
// which tells a client timing its guesses the secret's length. The guess is
// 1 MiB so that the work it causes dwarfs the machine's noise; each timing
// is the fastest of several runs (noise only slows a run down).
func TestMatchesTimeIgnoresTheSecretsLength(t *testing.T) {
	const n = 1 << 20
	guess := strings.Repeat("a", n)
	sameLength := New(strings.Repeat("b", n))
	otherLength := New("b")
	fastest := func(s Secret) time.Duration {
		best := time.Duration(1 << 62)
		for range 15 {
			start := time.Now()
			if s.Matches(guess) {
				t.Fatal("a wrong guess matched")
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	a, b := fastest(sameLength), fastest(otherLength)
	if ratio := float64(max(a, b)) / float64(min(a, b)); ratio > 3 {
		t.Errorf("checking a %d-byte guess took %v against a secret of its length and %v against a 1-byte one (%.0fx): the time tells the secret's length", n, a, b, ratio)
	}
}
