// Package session keeps who is signed in to the dashboard in a cookie the
// browser holds: sealed (encrypted with AES-256-GCM, then signed with
// HMAC-SHA256) under keys only the server knows, expiring, and bound to a
// CSRF token. Nothing is stored on the server, so every replica of the
// web server that shares the keys accepts the same sessions.
//
// Keys rotate: a key file lists the key that seals first and older keys
// after it, which still open what they sealed until it expires. A value
// that does not open under any key, or that has expired, is nobody's.
//
// Package login imports it, and tests that forge or tamper with cookies.
package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrInvalid is returned for a value that is not one a key of these
	// Keys sealed for this purpose: malformed, tampered with, sealed under
	// a key since dropped, or for another purpose.
	ErrInvalid = errors.New("invalid session value")
	// ErrExpired is returned for a value that was sealed here and has
	// expired.
	ErrExpired = errors.New("session expired")
)

// MinKeyLen is the shortest key accepted, in bytes.
const MinKeyLen = 32

// MaxValueLen bounds a sealed value: browsers keep cookies of up to 4096
// bytes, and a longer value is not worth decoding.
const MaxValueLen = 4096

// version prefixes every sealed value, so that a format change can tell
// old values from new ones.
const version = "v1"

// key is one secret and the keys derived from it, each for one use.
type key struct {
	sign, csrf []byte
	aead       cipher.AEAD
}

func derive(secret []byte) (key, error) {
	sub := func(info string) []byte {
		k, err := hkdf.Key(sha256.New, secret, nil, "turtles session "+info, 32)
		if err != nil {
			panic(err) // only for lengths HKDF-SHA256 cannot give
		}
		return k
	}
	block, err := aes.NewCipher(sub("encrypt"))
	if err != nil {
		return key{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return key{}, err
	}
	return key{sign: sub("sign"), csrf: sub("csrf"), aead: aead}, nil
}

// Keys seal and open values: the first key seals, every key opens. Safe
// for concurrent use.
type Keys struct {
	keys []key
}

// NewKeys returns Keys of secrets, the first of which seals. Each must be
// at least MinKeyLen bytes.
func NewKeys(secrets ...[]byte) (*Keys, error) {
	if len(secrets) == 0 {
		return nil, errors.New("session keys: none")
	}
	k := &Keys{}
	for i, s := range secrets {
		if len(s) < MinKeyLen {
			return nil, fmt.Errorf("session keys: key %d is %d bytes, want at least %d", i+1, len(s), MinKeyLen)
		}
		d, err := derive(s)
		if err != nil {
			return nil, fmt.Errorf("session keys: %w", err)
		}
		k.keys = append(k.keys, d)
	}
	return k, nil
}

// ParseKeys reads a key file: one key per line, the one that seals first,
// then older ones that still open. Blank lines and lines starting with #
// are skipped; blanks around a key are not part of it.
func ParseKeys(data []byte) (*Keys, error) {
	var secrets [][]byte
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		secrets = append(secrets, []byte(line))
	}
	return NewKeys(secrets...)
}

// envelope is what is sealed: the payload and when it expires.
type envelope struct {
	Expires int64           `json:"exp"` // unix seconds
	Payload json.RawMessage `json:"p"`
}

// b64 is strict: a value has one spelling, so that any change to it is
// a change to what it says.
var b64 = base64.RawURLEncoding.Strict()

// Seal returns payload sealed for purpose (such as "session"), valid
// until expires: a value safe for a cookie, whose payload only these
// Keys can read, and only for the same purpose.
func (k *Keys) Seal(purpose string, payload any, expires time.Time) (string, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return "", fmt.Errorf("seal %s: %w", purpose, err)
	}
	plain, err := json.Marshal(envelope{Expires: expires.Unix(), Payload: p})
	if err != nil {
		return "", fmt.Errorf("seal %s: %w", purpose, err)
	}
	kk := k.keys[0]
	nonce := make([]byte, kk.aead.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand docs)
	box := kk.aead.Seal(nonce, nonce, plain, []byte(purpose))
	body := b64.EncodeToString(box)
	v := version + "." + body + "." + b64.EncodeToString(mac(kk.sign, purpose, body))
	if len(v) > MaxValueLen {
		return "", fmt.Errorf("seal %s: %d bytes, more than a cookie holds", purpose, len(v))
	}
	return v, nil
}

// mac signs body for purpose: a value sealed for one purpose (a login
// in progress) never opens as another (a session).
func mac(signKey []byte, purpose, body string) []byte {
	m := hmac.New(sha256.New, signKey)
	m.Write([]byte(version + "\x00" + purpose + "\x00" + body))
	return m.Sum(nil)
}

// Open checks value, sealed for purpose, decodes its payload into out
// and returns when it expires. It returns ErrInvalid for anything these
// Keys did not seal for purpose, and ErrExpired once the value's time is
// past at now.
func (k *Keys) Open(purpose, value string, now time.Time, out any) (time.Time, error) {
	fail := func(format string, args ...any) (time.Time, error) {
		return time.Time{}, fmt.Errorf(format, args...)
	}
	if len(value) > MaxValueLen {
		return fail("%w: %d bytes", ErrInvalid, len(value))
	}
	ver, rest, ok1 := strings.Cut(value, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || ver != version {
		return fail("%w: malformed", ErrInvalid)
	}
	gotMAC, err := b64.DecodeString(sig)
	if err != nil || len(gotMAC) != sha256.Size {
		return fail("%w: malformed signature", ErrInvalid)
	}
	for _, kk := range k.keys {
		if !hmac.Equal(gotMAC, mac(kk.sign, purpose, body)) {
			continue
		}
		box, err := b64.DecodeString(body)
		if err != nil || len(box) < kk.aead.NonceSize() {
			return fail("%w: malformed body", ErrInvalid)
		}
		n := kk.aead.NonceSize()
		plain, err := kk.aead.Open(nil, box[:n], box[n:], []byte(purpose))
		if err != nil {
			return fail("%w: does not decrypt", ErrInvalid)
		}
		var env envelope
		dec := json.NewDecoder(bytes.NewReader(plain))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil || env.Payload == nil {
			return fail("%w: bad envelope", ErrInvalid)
		}
		exp := time.Unix(env.Expires, 0)
		if !now.Before(exp) {
			return fail("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
		}
		if err := json.Unmarshal(env.Payload, out); err != nil {
			return fail("%w: bad payload: %w", ErrInvalid, err)
		}
		return exp, nil
	}
	return fail("%w: signed by no key", ErrInvalid)
}

// Session is who is signed in.
type Session struct {
	// ID is random per login; the CSRF token is bound to it.
	ID string `json:"id"`
	// Forge is the forge signed in with ("github", "gitlab") and Login
	// the person's name there.
	Forge string `json:"forge"`
	Login string `json:"login"`
	// Token is the forge's OAuth access token, for what the forge shows
	// this person; empty when the server needs none.
	Token string `json:"token,omitempty"`
	// Expires is when the session ends: the browser forgets the cookie
	// then, and the server refuses it after.
	Expires time.Time `json:"-"`
}

// User is how the session's person is named in records: "github:alice".
func (s Session) User() string { return s.Forge + ":" + s.Login }

// purposeSession seals sessions.
const purposeSession = "session"

// NewID returns a fresh session ID.
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand docs)
	return b64.EncodeToString(b)
}

// Encode seals s, valid until s.Expires.
func (k *Keys) Encode(s Session) (string, error) {
	if s.ID == "" || s.Forge == "" || s.Login == "" {
		return "", errors.New("encode session: no ID, forge or login")
	}
	return k.Seal(purposeSession, s, s.Expires)
}

// Decode opens a session value (Encode's) at now. Errors wrap ErrInvalid
// or ErrExpired: either way, nobody is signed in.
func (k *Keys) Decode(value string, now time.Time) (Session, error) {
	var s Session
	exp, err := k.Open(purposeSession, value, now, &s)
	if err != nil {
		return Session{}, err
	}
	s.Expires = exp
	if s.ID == "" || s.Forge == "" || s.Login == "" {
		return Session{}, fmt.Errorf("%w: incomplete session", ErrInvalid)
	}
	return s, nil
}

// CSRF returns the token that forms must carry for s: bound to the
// session, so that a token from one session is worthless in another.
func (k *Keys) CSRF(s Session) string {
	return b64.EncodeToString(csrfMAC(k.keys[0].csrf, s.ID))
}

func csrfMAC(csrfKey []byte, id string) []byte {
	m := hmac.New(sha256.New, csrfKey)
	m.Write([]byte("csrf\x00" + id))
	return m.Sum(nil)
}

// CheckCSRF reports whether token is s's CSRF token under any key (a page
// rendered before a key rotation still acts).
func (k *Keys) CheckCSRF(s Session, token string) bool {
	got, err := b64.DecodeString(token)
	if err != nil || s.ID == "" {
		return false
	}
	ok := false
	for _, kk := range k.keys {
		// Every key is tried: the time taken says nothing of which.
		ok = hmac.Equal(got, csrfMAC(kk.csrf, s.ID)) || ok
	}
	return ok
}
