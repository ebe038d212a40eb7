package queue

import (
	"testing"
	"time"
)

func TestWakeups(t *testing.T) {
	var w Wakeups
	a, b := w.Chan("a"), w.Chan("b")
	w.Wake("a")
	select {
	case <-a:
	case <-time.After(time.Second):
		t.Fatal("Wake(a) did not close a channel taken before it")
	}
	select {
	case <-b:
		t.Fatal("Wake(a) woke b")
	default:
	}
	select {
	case <-w.Chan("a"):
		t.Fatal("a channel taken after Wake is already closed")
	default:
	}
	w.Wake("nobody") // no waiters: nothing to do, no panic
}
