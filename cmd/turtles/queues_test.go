package main

import (
	"path/filepath"
	"testing"
)

// TestDeliveryLog: the stand-in delivery log answers as hook.DeliveryLog
// says (Seen records nothing; FirstDelivery is true once per ID) and
// keeps what it recorded across a reopen, as a restarted hook needs.
func TestDeliveryLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deliveries.db")
	l, err := openDeliveryLog(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if seen, err := l.Seen(ctx, "d-1"); err != nil || seen {
		t.Errorf("Seen(d-1) before FirstDelivery = %v, %v; want false, nil", seen, err)
	}
	for _, tt := range []struct {
		id   string
		want bool
	}{{"d-1", true}, {"d-1", false}, {"d-2", true}} {
		if got, err := l.FirstDelivery(ctx, tt.id); err != nil || got != tt.want {
			t.Errorf("FirstDelivery(%q) = %v, %v; want %v, nil", tt.id, got, err, tt.want)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = openDeliveryLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if seen, err := l.Seen(ctx, "d-2"); err != nil || !seen {
		t.Errorf("Seen(d-2) after a reopen = %v, %v; want true, nil", seen, err)
	}
	if got, err := l.FirstDelivery(ctx, "d-2"); err != nil || got {
		t.Errorf("FirstDelivery(d-2) after a reopen = %v, %v; want false, nil", got, err)
	}
}
