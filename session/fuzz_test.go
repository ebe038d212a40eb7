package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/session"
)

// FuzzDecode feeds anything to the cookie parser: it never panics, and
// what it refuses it refuses as ErrInvalid or ErrExpired.
func FuzzDecode(f *testing.F) {
	k := keys(f, newKey, oldKey)
	// Seeds and inputs may come from another process, whose sealing
	// differs (a random nonce): what opens must be this very session.
	want := session.Session{ID: "fixed", Forge: "github", Login: "alice", Expires: t0.Add(time.Hour)}
	good, _ := k.Encode(want)
	expired, _ := k.Encode(session.Session{ID: "x", Forge: "github", Login: "a", Expires: t0.Add(-time.Hour)})
	login, _ := k.Seal("login", map[string]string{"state": "s"}, t0.Add(time.Hour))
	for _, s := range []string{good, expired, login, "", "v1..", "v1.AAAA.AAAA", "v1." + good[3:] + ".", "v1.\x00.\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := k.Decode(v, t0)
		switch {
		case err == nil:
			if s.ID != want.ID || s.User() != want.User() || s.Token != "" || !s.Expires.Equal(want.Expires) {
				t.Fatalf("Decode accepted %q as %+v, which no key sealed", v, s)
			}
		case !errors.Is(err, session.ErrInvalid) && !errors.Is(err, session.ErrExpired):
			t.Fatalf("Decode(%q) = %v, want ErrInvalid or ErrExpired", v, err)
		}
	})
}

// FuzzTamper changes one byte of a sealed session: the result never
// opens, unless the change changed nothing.
func FuzzTamper(f *testing.F) {
	k := keys(f, newKey)
	good, _ := k.Encode(alice())
	f.Add(0, byte('x'))
	f.Add(len(good)-1, byte('A'))
	f.Add(len(good)/2, byte('.'))
	f.Fuzz(func(t *testing.T, pos int, b byte) {
		if pos < 0 || pos >= len(good) || good[pos] == b {
			return
		}
		bad := good[:pos] + string([]byte{b}) + good[pos+1:]
		if _, err := k.Decode(bad, t0); !errors.Is(err, session.ErrInvalid) {
			t.Fatalf("byte %d changed to %q: Decode = %v, want ErrInvalid", pos, b, err)
		}
	})
}
