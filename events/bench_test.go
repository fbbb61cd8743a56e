package events_test

import (
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

func BenchmarkDecodeStructured(b *testing.B) {
	ev := events.Event{ID: "bench-0001-12345", Source: "vaultbench", SpecVersion: "1.0", Type: "bench.recorded", Subject: "s-42",
		Data: []byte(`{"n":12345,"pad":"` + strings.Repeat("x", 230) + `"}`)}
	raw, _ := ev.Encode()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Decode(raw, nil, events.DefaultMaxEventBytes); err != nil {
			b.Fatal(err)
		}
	}
}
