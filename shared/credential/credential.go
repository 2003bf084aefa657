// Package credential checks secrets presented by clients against the ones a
// process holds without telling the client, through timing, anything about
// the held secret: neither its bytes nor its length.
package credential

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Secret is a secret a process holds (the OpenVidu secret, the cluster
// secret), kept as its SHA-256 digest. The zero Secret, like New(""),
// matches nothing.
type Secret struct {
	digest [sha256.Size]byte
	set    bool
}

// New returns the Secret s; an empty s matches nothing.
func New(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{digest: sha256.Sum256([]byte(s)), set: true}
}

// Matches reports whether got, as presented by a client (the REST API's
// Basic password, the cluster secret's bearer token, joinRoom's secret), is
// the secret. got is reduced to its SHA-256 digest, compared with the held
// one by subtle.ConstantTimeCompare: the time taken depends on len(got),
// which the client knows, and neither on where the two differ nor on the
// secret's length. (subtle.ConstantTimeCompare on the secrets themselves
// returns at once when the lengths differ, so a client timing guesses of
// growing length finds the secret's.)
func (s Secret) Matches(got string) bool {
	d := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(d[:], s.digest[:])&boolInt(s.set) == 1
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
