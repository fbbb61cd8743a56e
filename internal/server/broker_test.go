package server

import (
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

// The broker's limit leaves room above --max-event-bytes for an event's
// key, headers and batch framing and for an event a little over the
// limit (quarantined too_large by the vault), for the default too —
// which kfake's own default (1048588 bytes) does not.
func TestBrokerMaxMessageBytes(t *testing.T) {
	for _, max := range []int{1024, 64 << 10, events.DefaultMaxEventBytes, 16 << 20} {
		got := brokerMaxMessageBytes(max)
		if got < max+max/4+64<<10 {
			t.Errorf("brokerMaxMessageBytes(%d) = %d, want at least %d", max, got, max+max/4+64<<10)
		}
	}
	if got := brokerMaxMessageBytes(events.DefaultMaxEventBytes); got <= 1048588 {
		t.Errorf("brokerMaxMessageBytes(default %d) = %d, want over kfake's default 1048588", events.DefaultMaxEventBytes, got)
	}
}
