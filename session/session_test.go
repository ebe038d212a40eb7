package session_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles/session"
)

var (
	t0     = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	oldKey = []byte(strings.Repeat("o", 32))
	newKey = []byte("a fresh key of at least 32 bytes, from the key file")
)

func keys(t testing.TB, secrets ...[]byte) *session.Keys {
	t.Helper()
	k, err := session.NewKeys(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func alice() session.Session {
	return session.Session{ID: session.NewID(), Forge: "github", Login: "alice", Token: "gho_secret", Expires: t0.Add(time.Hour)}
}

func TestRoundTrip(t *testing.T) {
	k := keys(t, newKey)
	s := alice()
	v, err := k.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, "alice") || strings.Contains(v, "gho_secret") {
		t.Errorf("sealed value %q shows what it holds", v)
	}
	got, err := k.Decode(v, t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("Decode(Encode(s)) (-want +got):\n%s", diff)
	}
	if got.User() != "github:alice" {
		t.Errorf("User() = %q", got.User())
	}
}

// TestExpiry: a session opens up to the second before it expires, and
// never after: an expired session is nobody.
func TestExpiry(t *testing.T) {
	k := keys(t, newKey)
	s := alice()
	v, _ := k.Encode(s)
	for _, tt := range []struct {
		at   time.Time
		want error
	}{
		{t0, nil},
		{s.Expires.Add(-time.Second), nil},
		{s.Expires, session.ErrExpired},
		{s.Expires.Add(24 * time.Hour), session.ErrExpired},
	} {
		if _, err := k.Decode(v, tt.at); !errors.Is(err, tt.want) {
			t.Errorf("Decode at %s = %v, want %v", tt.at, err, tt.want)
		}
	}
}

// TestTamper changes each byte of a sealed session in turn: not one
// change opens.
func TestTamper(t *testing.T) {
	k := keys(t, newKey)
	v, _ := k.Encode(alice())
	for i := range len(v) {
		for _, c := range []byte{'A', '_', '-', '.', 'z', '0'} {
			if v[i] == c {
				continue
			}
			bad := v[:i] + string(c) + v[i+1:]
			if _, err := k.Decode(bad, t0); !errors.Is(err, session.ErrInvalid) {
				t.Fatalf("Decode with byte %d changed to %q = %v, want ErrInvalid", i, c, err)
			}
		}
	}
	for name, bad := range map[string]string{
		"empty":     "",
		"truncated": v[:len(v)-1],
		"extended":  v + "A",
		"no sig":    v[:strings.LastIndex(v, ".")],
		"v2":        "v2" + v[2:],
		"huge":      strings.Repeat("A", session.MaxValueLen+1),
	} {
		if _, err := k.Decode(bad, t0); !errors.Is(err, session.ErrInvalid) {
			t.Errorf("Decode(%s) = %v, want ErrInvalid", name, err)
		}
	}
}

// TestPurpose: a value sealed for the login flow is no session.
func TestPurpose(t *testing.T) {
	k := keys(t, newKey)
	s := alice()
	v, err := k.Seal("login", s, s.Expires)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Decode(v, t0); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("Decode of a login value = %v, want ErrInvalid", err)
	}
	var got session.Session
	if _, err := k.Open("login", v, t0, &got); err != nil || got.Login != "alice" {
		t.Errorf("Open for its purpose = %+v, %v", got, err)
	}
}

// TestRotation: after a new key is put first, sessions sealed under the
// old one still open and keep their CSRF token; once the old key is
// dropped, they are nobody's.
func TestRotation(t *testing.T) {
	before := keys(t, oldKey)
	s := alice()
	v, _ := before.Encode(s)
	csrf := before.CSRF(s)

	rotated := keys(t, newKey, oldKey)
	if _, err := rotated.Decode(v, t0); err != nil {
		t.Errorf("old session under rotated keys: %v", err)
	}
	if !rotated.CheckCSRF(s, csrf) {
		t.Error("old CSRF token refused under rotated keys")
	}
	v2, _ := rotated.Encode(s)
	if _, err := keys(t, newKey).Decode(v2, t0); err != nil {
		t.Errorf("a session sealed after rotation does not open under the new key alone: %v", err)
	}

	dropped := keys(t, newKey)
	if _, err := dropped.Decode(v, t0); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("old session after the old key was dropped = %v, want ErrInvalid", err)
	}
	if dropped.CheckCSRF(s, csrf) {
		t.Error("old CSRF token accepted after the old key was dropped")
	}
}

// TestCSRF: the token is bound to the session and the keys.
func TestCSRF(t *testing.T) {
	k := keys(t, newKey)
	s, other := alice(), alice()
	tok := k.CSRF(s)
	if !k.CheckCSRF(s, tok) {
		t.Fatal("own token refused")
	}
	for name, bad := range map[string]string{
		"another session's": k.CSRF(other),
		"another server's":  keys(t, oldKey).CSRF(s),
		"empty":             "",
		"truncated":         tok[:len(tok)-1],
		"not base64":        "!!" + tok[2:],
		"the session ID":    s.ID,
	} {
		if k.CheckCSRF(s, bad) {
			t.Errorf("%s token accepted", name)
		}
	}
	if k.CheckCSRF(session.Session{}, k.CSRF(session.Session{})) {
		t.Error("a token accepted for a session without an ID")
	}
}

func TestParseKeys(t *testing.T) {
	k, err := session.ParseKeys([]byte("# turtles session keys, newest first\n\n  " + string(newKey) + "  \n" + string(oldKey) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := alice()
	v, _ := k.Encode(s)
	if _, err := keys(t, newKey).Decode(v, t0); err != nil {
		t.Errorf("the first key does not seal: %v", err)
	}
	old, _ := keys(t, oldKey).Encode(s)
	if _, err := k.Decode(old, t0); err != nil {
		t.Errorf("the second key does not open: %v", err)
	}
	for name, bad := range map[string]string{
		"empty":     "",
		"comments":  "# nothing\n",
		"short key": string(newKey) + "\nshort\n",
	} {
		if _, err := session.ParseKeys([]byte(bad)); err == nil {
			t.Errorf("ParseKeys(%s) accepted", name)
		}
	}
}

func TestEncodeIncomplete(t *testing.T) {
	k := keys(t, newKey)
	for _, s := range []session.Session{{Forge: "github", Login: "a"}, {ID: "x", Login: "a"}, {ID: "x", Forge: "github"}} {
		if _, err := k.Encode(s); err == nil {
			t.Errorf("Encode(%+v) accepted an incomplete session", s)
		}
	}
	// Sealed by hand, an incomplete session still opens as nobody.
	v, _ := k.Seal("session", session.Session{ID: "x", Forge: "github"}, t0.Add(time.Hour))
	if _, err := k.Decode(v, t0); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("Decode of a session without a login = %v, want ErrInvalid", err)
	}
}
