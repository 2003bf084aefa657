// Package turncred mints and checks Chorus's TURN credentials: the TURN REST
// API's time-limited credentials (draft-uberti-behave-turn-rest-00, section
// 2.2), as coturn accepts them with `use-auth-secret`/`static-auth-secret`.
//
// A credential is a pair
//
//	username = "<expiry>:<connectionId>"   expiry in Unix seconds (UTC), decimal
//	password = base64(HMAC-SHA1(secret, username))   standard encoding, padded
//
// Masters mint one per participant connection with the cluster's TURN secret;
// the TURN server recomputes the password from the username alone, so it
// needs no state and no Redis round trip. The TURN server never sees the
// password itself: it derives the long-term key MD5(username:realm:password)
// (RFC 8489 section 9.2.2) and checks the request's MESSAGE-INTEGRITY with it.
//
// A credential is valid up to and including its expiry second: it expires
// once now.Unix() > expiry (coturn's and pion's rule).
package turncred

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST API and coturn specify.
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Separator separates the expiry from the connection id in a username
// (coturn's default `rest-api-separator`).
const Separator = ":"

// MaxConnectionIDLen is the longest connection id, in bytes, a username may
// carry (STUN's USERNAME holds at most 513 bytes, RFC 8489 section 14.3).
const MaxConnectionIDLen = 256

// maxExpiryDigits bounds the expiry field (int64 seconds have at most 19 digits).
const maxExpiryDigits = 19

var (
	// ErrMalformed: the username is not "<expiry>:<connectionId>" as this
	// package writes it (see ParseUsername).
	ErrMalformed = errors.New("turncred: malformed username")
	// ErrExpired: the username's expiry is in the past.
	ErrExpired = errors.New("turncred: credential expired")
	// ErrWrongPassword: the password is not the HMAC of the username.
	ErrWrongPassword = errors.New("turncred: wrong password")
	// ErrInvalidArgument: Mint was given an empty secret, a non-positive
	// lifetime or a connection id a username cannot carry.
	ErrInvalidArgument = errors.New("turncred: invalid argument")
)

// Mint returns a credential for connectionID, valid from now until at least
// now+lifetime (the expiry is rounded up to the whole second).
//
// connectionID must be 1 to MaxConnectionIDLen bytes of printable ASCII
// (0x21-0x7E) without Separator; secret must be non-empty; lifetime must be
// positive. Otherwise the error wraps ErrInvalidArgument.
func Mint(secret, connectionID string, lifetime time.Duration, now time.Time) (username, password string, err error) {
	switch {
	case secret == "":
		return "", "", fmt.Errorf("%w: empty secret", ErrInvalidArgument)
	case lifetime <= 0:
		return "", "", fmt.Errorf("%w: lifetime %v is not positive", ErrInvalidArgument, lifetime)
	}
	if reason := checkConnectionID(connectionID); reason != "" {
		return "", "", fmt.Errorf("%w: connection id %s", ErrInvalidArgument, reason)
	}
	end := now.Add(lifetime)
	expiry := end.Unix()
	if end.Nanosecond() != 0 {
		expiry++
	}
	if expiry <= 0 {
		return "", "", fmt.Errorf("%w: expiry %d is not after the Unix epoch", ErrInvalidArgument, expiry)
	}
	username = strconv.FormatInt(expiry, 10) + Separator + connectionID
	return username, Password(secret, username), nil
}

// Password returns the password of username under secret:
// base64(HMAC-SHA1(secret, username)), whether or not username is well formed.
func Password(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username)) // a hash.Hash never fails to write
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ParseUsername splits a username into its expiry and connection id.
//
// The accepted form is exactly what Mint writes: a positive decimal expiry of
// at most 19 digits without sign or leading zero that fits an int64, the
// Separator, and a connection id of 1 to MaxConnectionIDLen printable ASCII
// bytes without Separator. Anything else gives an error wrapping ErrMalformed,
// so that one username names one (expiry, connection) pair only.
func ParseUsername(username string) (expiry time.Time, connectionID string, err error) {
	ts, id, found := strings.Cut(username, Separator)
	if !found {
		return time.Time{}, "", fmt.Errorf("%w: no %q separator", ErrMalformed, Separator)
	}
	if reason := checkExpiry(ts); reason != "" {
		return time.Time{}, "", fmt.Errorf("%w: expiry %s", ErrMalformed, reason)
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: expiry: %w", ErrMalformed, err)
	}
	if reason := checkConnectionID(id); reason != "" {
		return time.Time{}, "", fmt.Errorf("%w: connection id %s", ErrMalformed, reason)
	}
	return time.Unix(secs, 0), id, nil
}

// Check is what a TURN server needs: it parses username, refuses it if it
// has expired at now, and returns its connection id and the password it must
// have. Errors wrap ErrMalformed or ErrExpired.
func Check(secret, username string, now time.Time) (connectionID, password string, err error) {
	expiry, connectionID, err := ParseUsername(username)
	if err != nil {
		return "", "", err
	}
	if now.Unix() > expiry.Unix() {
		return "", "", fmt.Errorf("%w: at %d, %d s after its expiry", ErrExpired, now.Unix(), now.Unix()-expiry.Unix())
	}
	return connectionID, Password(secret, username), nil
}

// Verify checks a whole credential at now (in constant time for the
// password) and returns its connection id. Errors wrap ErrMalformed,
// ErrExpired or ErrWrongPassword.
func Verify(secret, username, password string, now time.Time) (connectionID string, err error) {
	connectionID, want, err := Check(secret, username, now)
	if err != nil {
		return "", err
	}
	if !hmac.Equal([]byte(password), []byte(want)) {
		return "", ErrWrongPassword
	}
	return connectionID, nil
}

// checkExpiry returns why ts is not a canonical positive decimal, or "".
func checkExpiry(ts string) string {
	switch {
	case ts == "":
		return "is empty"
	case len(ts) > maxExpiryDigits:
		return "has too many digits"
	case ts[0] == '0':
		return "has a leading zero"
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return "is not decimal digits"
		}
	}
	return ""
}

// checkConnectionID returns why id cannot be a username's connection id, or "".
func checkConnectionID(id string) string {
	switch {
	case id == "":
		return "is empty"
	case len(id) > MaxConnectionIDLen:
		return fmt.Sprintf("is longer than %d bytes", MaxConnectionIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < 0x21 || c > 0x7e {
			return "has a byte that is not printable ASCII"
		}
		if c == Separator[0] {
			return fmt.Sprintf("contains %q", Separator)
		}
	}
	return ""
}
