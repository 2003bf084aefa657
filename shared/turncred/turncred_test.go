package turncred

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the algorithm under test
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var now = time.Unix(1_700_000_000, 0)

func TestMint(t *testing.T) {
	tests := []struct {
		name         string
		secret, id   string
		lifetime     time.Duration
		now          time.Time
		wantUsername string
		wantErr      error
	}{
		{name: "whole seconds", secret: "s3cret", id: "con_AbC123", lifetime: time.Hour, now: now,
			wantUsername: "1700003600:con_AbC123"},
		{name: "fraction rounds up", secret: "s", id: "c", lifetime: 1500 * time.Millisecond, now: now,
			wantUsername: "1700000002:c"},
		{name: "sub-second now rounds up", secret: "s", id: "c", lifetime: time.Second, now: now.Add(time.Nanosecond),
			wantUsername: "1700000002:c"},
		{name: "longest id", secret: "s", id: strings.Repeat("x", MaxConnectionIDLen), lifetime: time.Second, now: now,
			wantUsername: "1700000001:" + strings.Repeat("x", MaxConnectionIDLen)},
		{name: "empty secret", secret: "", id: "c", lifetime: time.Hour, now: now, wantErr: ErrInvalidArgument},
		{name: "zero lifetime", secret: "s", id: "c", lifetime: 0, now: now, wantErr: ErrInvalidArgument},
		{name: "negative lifetime", secret: "s", id: "c", lifetime: -time.Second, now: now, wantErr: ErrInvalidArgument},
		{name: "empty id", secret: "s", id: "", lifetime: time.Hour, now: now, wantErr: ErrInvalidArgument},
		{name: "id with separator", secret: "s", id: "a:b", lifetime: time.Hour, now: now, wantErr: ErrInvalidArgument},
		{name: "id with space", secret: "s", id: "a b", lifetime: time.Hour, now: now, wantErr: ErrInvalidArgument},
		{name: "id with non-ASCII", secret: "s", id: "é", lifetime: time.Hour, now: now, wantErr: ErrInvalidArgument},
		{name: "id too long", secret: "s", id: strings.Repeat("x", MaxConnectionIDLen+1), lifetime: time.Hour, now: now,
			wantErr: ErrInvalidArgument},
		{name: "expiry before epoch", secret: "s", id: "c", lifetime: time.Second, now: time.Unix(-10, 0),
			wantErr: ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			username, password, err := Mint(tt.secret, tt.id, tt.lifetime, tt.now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Mint error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if username != tt.wantUsername {
				t.Errorf("username = %q, want %q", username, tt.wantUsername)
			}
			if want := referencePassword(tt.secret, username); password != want {
				t.Errorf("password = %q, want %q", password, want)
			}
			if id, err := Verify(tt.secret, username, password, tt.now.Add(tt.lifetime)); err != nil || id != tt.id {
				t.Errorf("Verify at the end of the lifetime = %q, %v; want %q, nil", id, err, tt.id)
			}
		})
	}
}

// referencePassword is the TURN REST API's password, written independently
// of Password.
func referencePassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	_, _ = mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestPasswordKnownVector(t *testing.T) {
	// HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog") is
	// de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9 (the commonly published HMAC
	// example), here base64-encoded as the TURN REST API's password.
	got := Password("key", "The quick brown fox jumps over the lazy dog")
	if want := "3nybhbi3iqa8ino29wqQcBydtNk="; got != want {
		t.Fatalf("Password = %q, want %q", got, want)
	}
}

func TestParseUsername(t *testing.T) {
	tests := []struct {
		username   string
		wantExpiry int64
		wantID     string
		wantErr    bool
	}{
		{username: "1700000000:con_X", wantExpiry: 1700000000, wantID: "con_X"},
		{username: "1:a", wantExpiry: 1, wantID: "a"},
		{username: "9223372036854775807:a", wantExpiry: 9223372036854775807, wantID: "a"},
		{username: "", wantErr: true},
		{username: "1700000000", wantErr: true},                             // pion's plain time-windowed form
		{username: "con_X", wantErr: true},                                  // no expiry
		{username: ":con_X", wantErr: true},                                 // empty expiry
		{username: "1700000000:", wantErr: true},                            // empty id
		{username: "1700000000:a:b", wantErr: true},                         // separator in the id
		{username: "+1700000000:a", wantErr: true},                          // sign
		{username: "-1700000000:a", wantErr: true},                          // negative
		{username: "0:a", wantErr: true},                                    // zero
		{username: "01700000000:a", wantErr: true},                          // leading zero
		{username: "17000x0000:a", wantErr: true},                           // not decimal
		{username: "1700000000 :a", wantErr: true},                          // space
		{username: "9223372036854775808:a", wantErr: true},                  // overflows int64
		{username: "99999999999999999999:a", wantErr: true},                 // 20 digits
		{username: "1700000000:con X", wantErr: true},                       // space in id
		{username: "1700000000:con\x00", wantErr: true},                     // NUL in id
		{username: "1700000000:\xff", wantErr: true},                        // not ASCII
		{username: "１７００:a", wantErr: true},                                 // non-ASCII digits
		{username: "1700000000:" + strings.Repeat("y", 257), wantErr: true}, // id too long
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.username), func(t *testing.T) {
			expiry, id, err := ParseUsername(tt.username)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseUsername = %v, %q, %v; want ErrMalformed", expiry, id, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseUsername: %v", err)
			}
			if expiry.Unix() != tt.wantExpiry || id != tt.wantID {
				t.Errorf("ParseUsername = %d, %q; want %d, %q", expiry.Unix(), id, tt.wantExpiry, tt.wantID)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	const secret = "cluster-secret"
	username, password, err := Mint(secret, "con_A", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	expiry := now.Add(time.Minute)
	tests := []struct {
		name                       string
		secret, username, password string
		at                         time.Time
		wantErr                    error
	}{
		{name: "valid", secret: secret, username: username, password: password, at: now},
		{name: "valid in the expiry second", secret: secret, username: username, password: password,
			at: expiry.Add(999 * time.Millisecond)},
		{name: "expired", secret: secret, username: username, password: password, at: expiry.Add(time.Second),
			wantErr: ErrExpired},
		{name: "wrong password", secret: secret, username: username, password: referencePassword("other", username),
			at: now, wantErr: ErrWrongPassword},
		{name: "empty password", secret: secret, username: username, password: "", at: now, wantErr: ErrWrongPassword},
		{name: "other secret", secret: "other", username: username, password: password, at: now,
			wantErr: ErrWrongPassword},
		{name: "username changed", secret: secret, username: strings.Replace(username, "con_A", "con_B", 1),
			password: password, at: now, wantErr: ErrWrongPassword},
		{name: "expiry extended", secret: secret, username: "9" + username, password: password, at: now,
			wantErr: ErrWrongPassword},
		{name: "malformed beats expiry", secret: secret, username: "1:", password: password, at: now,
			wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := Verify(tt.secret, tt.username, tt.password, tt.at)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify = %q, %v; want %v", id, err, tt.wantErr)
				}
				return
			}
			if err != nil || id != "con_A" {
				t.Fatalf("Verify = %q, %v; want con_A, nil", id, err)
			}
		})
	}
}

// FuzzParseUsername checks that ParseUsername never panics, accepts only
// the canonical form Mint writes (a parsed username formats back to itself),
// and that Check agrees with it.
func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{
		"1700000000:con_X", "1:a", "0:a", "01:a", "+1:a", "-1:a", "1700000000", ":x", "1:", "1:a:b",
		"9223372036854775807:a", "9223372036854775808:a", "1:\x00", "1:\xff\xfe", "１:a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, username string) {
		expiry, id, err := ParseUsername(username)
		_, password, checkErr := Check("s", username, time.Unix(0, 0))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseUsername(%q) error %v does not wrap ErrMalformed", username, err)
			}
			if !errors.Is(checkErr, ErrMalformed) {
				t.Fatalf("Check(%q) = %v, want ErrMalformed as ParseUsername", username, checkErr)
			}
			return
		}
		if back := strconv.FormatInt(expiry.Unix(), 10) + Separator + id; back != username {
			t.Fatalf("ParseUsername(%q) = %d, %q, which formats as %q", username, expiry.Unix(), id, back)
		}
		if expiry.Unix() <= 0 || id == "" || len(id) > MaxConnectionIDLen || strings.Contains(id, Separator) {
			t.Fatalf("ParseUsername(%q) accepted expiry %d, id %q", username, expiry.Unix(), id)
		}
		if checkErr != nil || password != referencePassword("s", username) {
			t.Fatalf("Check(%q) at the epoch = %q, %v", username, password, checkErr)
		}
	})
}
