package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "turtles_test_total", Help: "test"}
	first, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatalf("second Register: %v", err)
	}
	second.Inc()
	if first != second {
		t.Error("a second registration under the same name got its own counter, want the first one shared")
	}
	// Another kind of collector under the same name is a wiring mistake.
	if _, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "turtles_test_total", Help: "test"})); err == nil {
		t.Error("Register of a gauge over a counter succeeded")
	}
}
